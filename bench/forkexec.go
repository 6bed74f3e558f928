//go:build linux

package main

/*
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

// fork_exec_wait does what pam_totp.so does to start its helper, minus the socket: fork the
// host (all signals blocked), point fds 0-2 at /dev/null, exec with a fixed environment, and
// wait for the exit. It returns the wait status, or -1.
static int fork_exec_wait(char *path, char *arg) {
	char *argv[] = { path, arg, NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	sigset_t all, old;
	int st;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDWR);
		if (null < 0)
			_exit(126);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(path, argv, envp);
		_exit(127);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

// spawn_wait starts the same program with posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK,
// so the host's page tables are not copied) and waits for it.
static int spawn_wait(char *path, char *arg) {
	char *argv[] = { path, arg, NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	st = posix_spawn(&pid, path, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (st != 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"
)

// forkExecN forks this process and execs argv[0] (with at most one argument) n times, like
// pam_totp.so starts its helper, and returns the time of each start-to-exit. With spawn it uses
// posix_spawn instead of fork.
func forkExecN(argv []string, n int, spawn bool) ([]int64, error) {
	path := C.CString(argv[0])
	defer C.free(unsafe.Pointer(path))
	var arg *C.char
	if len(argv) > 1 {
		arg = C.CString(argv[1])
		defer C.free(unsafe.Pointer(arg))
	}
	lat := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		var st C.int
		if spawn {
			st = C.spawn_wait(path, arg)
		} else {
			st = C.fork_exec_wait(path, arg)
		}
		lat = append(lat, int64(time.Since(t0)))
		if st != 0 {
			return lat, fmt.Errorf("%s: wait status %d", argv[0], int(st))
		}
	}
	return lat, nil
}
