#ifndef MYELIN_TASK_ALLOCATOR_H
#define MYELIN_TASK_ALLOCATOR_H

#include <stddef.h>

/// Memory from the current Swift task's allocator (the slabs async frames are allocated
/// from), released in reverse order of allocation. Outside a task: malloc and free.
void *myelin_task_alloc(size_t size);
void myelin_task_dealloc(void *pointer);

#endif
