// The Swift runtime's task allocator, an ABI entry point of libswift_Concurrency declared
// with the Swift calling convention. Swift code may not name these runtime symbols itself
// (`@_silgen_name` on a reserved runtime name is refused), so they are reached from C.
#include "myelin_task_allocator.h"

extern void *swift_task_alloc(size_t size) __attribute__((swiftcall));
extern void swift_task_dealloc(void *pointer) __attribute__((swiftcall));

void *myelin_task_alloc(size_t size) { return swift_task_alloc(size); }

void myelin_task_dealloc(void *pointer) { swift_task_dealloc(pointer); }
