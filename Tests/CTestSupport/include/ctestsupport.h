#ifndef MYELIN_CTESTSUPPORT_H
#define MYELIN_CTESTSUPPORT_H
#include <spawn.h>

/// pipe2(fds, O_CLOEXEC): glibc declares it only under _GNU_SOURCE.
int myelin_test_pipe_cloexec(int fds[2]);
/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+, _GNU_SOURCE): the child closes
/// every descriptor from `from` up.
int myelin_test_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

#endif
