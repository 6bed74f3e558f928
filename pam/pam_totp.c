// The Go tests of this module live in this directory too; this constraint
// keeps the go tool from treating the C file as part of a Go package.
//go:build ignore

/*
 * pam_totp.so: the thin C side of pam-totp.
 *
 * pam_sm_authenticate collects what PAM and NSS know about the login, hands
 * it to a verifier, relays the verifier's prompts and messages through the PAM
 * conversation and maps its verdict to a PAM code. The verifier is a resident
 * one on a root-only Unix socket when that answers, else the helper
 * (fork+exec, socketpair on fd 3). The verifier decides everything; this file
 * moves bytes and fails closed. The wire format is docs/protocol.md.
 *
 * Rules kept here, because this code runs inside sshd and sudo:
 *  - no threads, no static mutable state, nothing written to stdout/stderr;
 *  - between fork and exec only async-signal-safe calls, no malloc;
 *  - SIGCHLD is SIG_DFL while our child lives; we reap only our own pid;
 *  - answers never reach a log and are wiped before they are freed.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#ifndef DEFAULT_HELPER
#define DEFAULT_HELPER "/usr/libexec/pam-totp/pam-totp-helper"
#endif
#ifndef DEFAULT_CONFIG
#define DEFAULT_CONFIG "/etc/pam-totp/pam_totp.conf"
#endif
#ifndef DEFAULT_SOCKET
#define DEFAULT_SOCKET "/run/pam-totp/verify.sock"
#endif

#define MAX_PAYLOAD 16384      /* bytes in one frame, both directions */
#define MAX_FRAMES 64          /* frames the helper may send */
#define MAX_ANSWER 1025        /* one more than the helper accepts, so it sees "too long" */
#define DEFAULT_TIMEOUT 10     /* seconds of the helper's own work */
#define MAX_TIMEOUT 120
#define DEFAULT_CONNECT_MS 300 /* the resident verifier's bound to connect and to send a first frame */
#define MAX_CONNECT_MS 5000
#define MAX_GROUPS 65536       /* NGROUPS_MAX on Linux */
#define FEW_GROUPS 256         /* groups a first getgrouplist call takes, on the stack (1 KiB) */
#define NSS_BUF_MAX (16 << 20) /* an LDAP group with many members needs a big buffer */
#define HELPER_FD 3
#define NSEC 1000000000LL

#define EXPORT PAM_EXTERN __attribute__((visibility("default")))

struct options {
	const char *helper, *config, *policy;
	const char *socket; /* the resident verifier; NULL: socket=none */
	int debug, timeout; /* timeout in seconds */
	int connect_ms;
	int errors_when_silent; /* relay the helper's error lines under PAM_SILENT */
	int maxtries_as_autherr; /* answer a lockout with PAM_AUTH_ERR (for sshd) */
};

/* The request (frame Q): key=value entries, each ended by a NUL. */
struct request {
	size_t len;
	int overflow; /* it would not fit in one frame */
	char p[MAX_PAYLOAD];
};

/* One exchange with a verifier (a helper we started, or the resident one on
 * its socket) and what is left of its time budget. */
struct helper {
	pam_handle_t *pamh;
	const char *what, *path, *user; /* for logs: "helper" or "resident verifier" */
	int timeout, fd;
	pid_t pid; /* 0 once reaped; never set on the socket */
	int64_t budget_ns;
	int64_t later_ns; /* when > 0, the budget after the first frame (socket: timeout=) */
	int errors_when_silent;
	int relayed; /* something reached the user or PAM: no falling back after that */
};

static const struct {
	const char *name;
	int code;
} verdicts[] = {
	{ "success", PAM_SUCCESS },	 { "auth_err", PAM_AUTH_ERR },	   { "user_unknown", PAM_USER_UNKNOWN },
	{ "maxtries", PAM_MAXTRIES }, { "authinfo_unavail", PAM_AUTHINFO_UNAVAIL }, { "system_err", PAM_SYSTEM_ERR },
}; /* anything else: PAM_AUTH_ERR */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

/* The value of arg when it is key=value, else NULL. */
static const char *value(const char *arg, const char *key)
{
	size_t n = strlen(key);

	return strncmp(arg, key, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

/* A later argument wins. Every argument also reaches the helper as arg=. */
static int parse_options(pam_handle_t *pamh, int argc, const char **argv, struct options *o)
{
	const char *v;
	char *end;
	long t;

	*o = (struct options){ DEFAULT_HELPER, DEFAULT_CONFIG, "", DEFAULT_SOCKET, 0, DEFAULT_TIMEOUT, DEFAULT_CONNECT_MS,
			       0, 0 };
	for (int i = 0; i < argc; i++)
		o->debug |= strcmp(argv[i], "debug") == 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "debug") == 0) {
			continue;
		} else if (strcmp(argv[i], "maxtries_as_autherr") == 0) {
			/* OpenSSH answers PAM_MAXTRIES by turning keyboard-interactive
			 * off for the connection, and the OpenSSH client, left with no
			 * method, then asks for a password that cannot work. With
			 * PAM_AUTH_ERR the lockout sentence is shown and the client
			 * ends with "Permission denied". */
			o->maxtries_as_autherr = 1;
		} else if (strcmp(argv[i], "errors_when_silent") == 0) {
			/* sudo (before 1.9.16, and after it unless !pam_silent) calls
			 * PAM with PAM_SILENT, which hides why a code failed or how
			 * long a lockout lasts: this relays those sentences anyway
			 * (never the informational ones). */
			o->errors_when_silent = 1;
		} else if ((v = value(argv[i], "helper")) != NULL) {
			o->helper = v;
		} else if ((v = value(argv[i], "config")) != NULL) {
			o->config = v;
		} else if ((v = value(argv[i], "policy")) != NULL) {
			o->policy = v;
		} else if ((v = value(argv[i], "timeout")) != NULL) {
			errno = 0;
			t = strtol(v, &end, 10);
			if (errno != 0 || end == v || *end != '\0' || t < 1 || t > MAX_TIMEOUT) {
				/* Fail closed: a typo must not quietly mean another limit. */
				pam_syslog(pamh, LOG_ERR, "bad argument %s: want 1..%d seconds", argv[i], MAX_TIMEOUT);
				return PAM_SERVICE_ERR;
			}
			o->timeout = (int)t;
		} else if ((v = value(argv[i], "connect_ms")) != NULL) {
			errno = 0;
			t = strtol(v, &end, 10);
			if (errno != 0 || end == v || *end != '\0' || t < 1 || t > MAX_CONNECT_MS) {
				pam_syslog(pamh, LOG_ERR, "bad argument %s: want 1..%d milliseconds", argv[i],
					   MAX_CONNECT_MS);
				return PAM_SERVICE_ERR;
			}
			o->connect_ms = (int)t;
		} else if ((v = value(argv[i], "socket")) != NULL) {
			/* An absolute path that fits in sun_path, or none: a typo must
			 * not quietly mean a relative path or a cut one. */
			if (strcmp(v, "none") == 0) {
				o->socket = NULL;
			} else if (v[0] != '/' || strlen(v) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
				pam_syslog(pamh, LOG_ERR, "bad argument %s: want an absolute path of at most %zu bytes, or none",
					   argv[i], sizeof ((struct sockaddr_un *)0)->sun_path - 1);
				return PAM_SERVICE_ERR;
			} else {
				o->socket = v;
			}
		} else if (o->debug) {
			pam_syslog(pamh, LOG_DEBUG, "unknown argument %s: passed on to the helper", argv[i]);
		}
	}
	return PAM_SUCCESS;
}

/* Why st, the file itself or a directory above it, is unsafe; NULL if safe. */
static const char *unsafe(const struct stat *st, int is_dir, int exec)
{
	if (is_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
		return is_dir ? "is not a directory" : "is not a regular file";
	if (st->st_uid != 0)
		return "is not owned by root";
	/* A writable directory passes only with the sticky bit (/tmp): there
	 * nobody but root may rename or remove the root-owned entry below. */
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(is_dir && (st->st_mode & S_ISVTX)))
		return "is group- or world-writable";
	if (exec && !(st->st_mode & S_IXUSR))
		return "is not executable";
	return NULL;
}

/*
 * Accepts path only when it is a regular file owned by root that nobody else
 * can write, below directories that nobody but root can change. Symlinks are
 * resolved first; *resolved (when asked) gets the resolved path, which is
 * what we exec, so the file checked is the file that runs.
 */
static int check_path(pam_handle_t *pamh, const char *what, const char *path, int exec, char **resolved)
{
	char *real = realpath(path, NULL), *cur, *slash = NULL;
	const char *why = NULL;
	struct stat st;

	if (real == NULL) {
		pam_syslog(pamh, LOG_ERR, "%s %s: %s", what, path, errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	cur = strdup(real);
	/* The file, then each directory above it: "/a/b/f", "/a/b", "/a", "/". */
	for (int level = 0; cur != NULL && why == NULL; level++) {
		if (level > 0) {
			if (slash == cur) /* the root was the last one */
				break;
			slash = strrchr(cur, '/');
			slash[slash == cur] = '\0';
		}
		if (stat(cur, &st) != 0) {
			why = strerror(errno);
			pam_syslog(pamh, LOG_ERR, "%s %s: %s: %s", what, path, cur, why);
		} else if ((why = unsafe(&st, level > 0, exec && level == 0)) != NULL) {
			pam_syslog(pamh, LOG_ERR, "%s %s: %s %s (owner uid %u, mode %04o)", what, path, cur, why,
				   (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		}
	}
	if (cur == NULL)
		why = "out of memory";
	free(cur);
	if (why == NULL && resolved != NULL)
		*resolved = real;
	else
		free(real);
	return why == NULL ? 0 : -1;
}

static void req_put(struct request *r, const char *s, size_t n)
{
	if (r->overflow || n > sizeof r->p - r->len) {
		r->overflow = 1;
		return;
	}
	memcpy(r->p + r->len, s, n);
	r->len += n;
}

static void req_add(struct request *r, const char *key, const char *val)
{
	val = val != NULL ? val : "";
	req_put(r, key, strlen(key));
	req_put(r, "=", 1);
	req_put(r, val, strlen(val) + 1); /* with its NUL */
}

static const char *item(pam_handle_t *pamh, int type)
{
	const void *v = NULL;

	return pam_get_item(pamh, type, &v) == PAM_SUCCESS && v != NULL ? v : "";
}

/* Doubles an NSS buffer; the _r functions say ERANGE when an entry does not fit. */
static int grow(char **buf, size_t *len)
{
	size_t n = *len ? *len * 2 : 4096;
	char *p;

	if (n > NSS_BUF_MAX || (p = realloc(*buf, n)) == NULL)
		return -1;
	*buf = p;
	*len = n;
	return 0;
}

/* One group=NAME entry, NUL-ended like every entry, for every group NSS gives
 * the user (LDAP/SSSD too): a name may hold any byte but NUL, so no name can
 * read as two. */
static int add_groups(pam_handle_t *pamh, struct request *r, const struct passwd *pw)
{
	/* Most users are in a few groups: the first call uses the stack. (A
	 * 256 KiB array for every login was mmap'ed and unmapped each time: page
	 * faults and, in a threaded host, a TLB shootdown on every core.) */
	gid_t few[FEW_GROUPS], *gids = few;
	char *buf = NULL, num[16];
	size_t blen = 0;
	int n = FEW_GROUPS, rc = PAM_SYSTEM_ERR;

	if (grow(&buf, &blen) != 0)
		goto out;
	if (getgrouplist(pw->pw_name, pw->pw_gid, gids, &n) < 0) {
		/* n is now how many there are: once more with room for them and a
		 * few more (groups added meanwhile); a list still growing denies. */
		if (n > MAX_GROUPS) {
			pam_syslog(pamh, LOG_ERR, "user %s: more than %d groups", pw->pw_name, MAX_GROUPS);
			goto out;
		}
		n += 16;
		if ((gids = malloc((size_t)n * sizeof *gids)) == NULL)
			goto out;
		if (getgrouplist(pw->pw_name, pw->pw_gid, gids, &n) < 0) {
			pam_syslog(pamh, LOG_ERR, "user %s: the list of groups changed during the login", pw->pw_name);
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		struct group gr, *grp = NULL;
		const char *name = num;

		while (getgrgid_r(gids[i], &gr, buf, blen, &grp) == ERANGE && grow(&buf, &blen) == 0)
			;
		if (grp != NULL)
			name = grp->gr_name;
		else /* a group without a name still counts, as its number */
			snprintf(num, sizeof num, "%u", (unsigned)gids[i]);
		req_add(r, "group", name);
	}
	rc = PAM_SUCCESS;
out:
	free(buf);
	if (gids != few)
		free(gids);
	return rc;
}

/* user, user_known, uid, group: from NSS, so the name is the canonical one. */
static int add_user(pam_handle_t *pamh, struct request *r, const char *user)
{
	struct passwd pw, *pwp = NULL;
	char *buf = NULL, uid[16];
	size_t blen = 0;
	int e = ENOMEM, rc = PAM_SUCCESS;

	if (grow(&buf, &blen) == 0)
		while ((e = getpwnam_r(user, &pw, buf, blen, &pwp)) == ERANGE && grow(&buf, &blen) == 0)
			;
	/* Not found is 0 or one of these (getpwnam_r(3)); the helper decides
	 * about unknown users. Any other error (LDAP down?) is not "unknown". */
	if (pwp == NULL && e != 0 && e != ENOENT && e != ESRCH && e != EBADF && e != EPERM) {
		pam_syslog(pamh, LOG_ERR, "user %s: NSS lookup failed: %s", user, strerror(e));
		free(buf);
		return PAM_SYSTEM_ERR;
	}
	snprintf(uid, sizeof uid, "%u", pwp ? (unsigned)pw.pw_uid : 0U);
	req_add(r, "user", pwp ? pw.pw_name : user);
	req_add(r, "user_known", pwp ? "1" : "0");
	req_add(r, "uid", pwp ? uid : "");
	if (pwp != NULL)
		rc = add_groups(pamh, r, &pw);
	free(buf);
	return rc;
}

static int build_request(pam_handle_t *pamh, const struct options *o, int argc, const char **argv,
			 const char *user, struct request *r)
{
	char num[32] = "";
	ssize_t n;
	int fd, rc;

	req_add(r, "version", "1");
	if ((rc = add_user(pamh, r, user)) != PAM_SUCCESS)
		return rc;
	req_add(r, "service", item(pamh, PAM_SERVICE));
	req_add(r, "rhost", item(pamh, PAM_RHOST));
	req_add(r, "tty", item(pamh, PAM_TTY));
	req_add(r, "ruser", item(pamh, PAM_RUSER));
	req_add(r, "ssh_auth_info", pam_getenv(pamh, "SSH_AUTH_INFO_0"));
	if ((fd = open("/proc/self/sessionid", O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, num, sizeof num - 1);
		num[n > 0 ? n : 0] = '\0';
		num[strcspn(num, "\n")] = '\0';
		close(fd);
	}
	req_add(r, "audit_session", num);
	snprintf(num, sizeof num, "%ld", (long)getsid(0));
	req_add(r, "sid", num);
	req_add(r, "config", o->config);
	req_add(r, "policy", o->policy);
	req_add(r, "debug", o->debug ? "1" : "0");
	for (int i = 0; i < argc; i++)
		req_add(r, "arg", argv[i]);
	if (r->overflow) {
		pam_syslog(pamh, LOG_ERR, "user %s: request exceeds %d bytes (too many groups?)", user, MAX_PAYLOAD);
		return PAM_SYSTEM_ERR;
	}
	return PAM_SUCCESS;
}

/* Gives the child limits of its own: no core file; at least MIN_NOFILE open
 * files; file size, address space, data and processes unlimited. Root raises
 * the hard limits too where it may (CAP_SYS_RESOURCE); otherwise, and in a
 * non-root host, the soft limits go up to the hard ones. Failures are left to
 * the helper, which then fails closed. */
#define MIN_NOFILE 1024
static void raise_limit(int res, rlim_t want, int as_root)
{
	struct rlimit rl;

	if (getrlimit(res, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (as_root && rl.rlim_max < want) {
		struct rlimit up = { want, want };
		if (setrlimit(res, &up) == 0)
			return;
	}
	rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
	setrlimit(res, &rl);
}

static void own_limits(int as_root)
{
	static const int unlimited[] = { RLIMIT_FSIZE, RLIMIT_AS, RLIMIT_DATA, RLIMIT_NPROC };
	struct rlimit none = { 0, 0 };

	setrlimit(RLIMIT_CORE, &none);
	raise_limit(RLIMIT_NOFILE, MIN_NOFILE, as_root);
	for (size_t i = 0; i < sizeof unlimited / sizeof unlimited[0]; i++)
		raise_limit(unlimited[i], RLIM_INFINITY, as_root);
}

/*
 * The child between fork and exec. All signals are blocked (see spawn), so no
 * handler of the host runs here. Only async-signal-safe calls; a failure ends
 * in _exit, which the parent sees as an exit before a verdict.
 */
static void __attribute__((noreturn)) child(const char *path, int sock, long maxfd, int as_root)
{
	char *const argv[] = { (char *)path, (char *)"--pam", NULL };
	char *const envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	int s, null;

	/* SIG_IGN survives exec: reset every disposition (SIGKILL/SIGSTOP just fail). */
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);

	/* The host may run with 0-2 closed, so the socket or /dev/null may sit
	 * anywhere in 0-3: lift the socket above 3 first. */
	s = fcntl(sock, F_DUPFD_CLOEXEC, HELPER_FD + 1);
	null = open("/dev/null", O_RDWR);
	if (s < 0 || null < 0)
		_exit(126);
	for (int fd = 0; fd < HELPER_FD; fd++)
		if (fd != null && dup2(null, fd) < 0)
			_exit(126);
	if (dup2(s, HELPER_FD) < 0) /* dup2 clears close-on-exec */
		_exit(126);
#ifdef SYS_close_range
	if (syscall(SYS_close_range, HELPER_FD + 1U, ~0U, 0U) != 0)
#endif
		for (long fd = HELPER_FD + 1; fd < maxfd; fd++)
			close((int)fd);

	/* sudo runs us with the user's real uid: make the helper all root, so
	 * the user can neither signal nor trace it. */
	if (as_root && (setresgid(0, 0, 0) != 0 || setgroups(0, NULL) != 0 || setresuid(0, 0, 0) != 0))
		_exit(126);
	/* Not the caller's working directory (sudo: the user's, maybe unreadable
	 * or on a hung NFS mount) nor its limits (ulimit -v or -n too small for a
	 * Go runtime; core files of a process that holds secrets). */
	if (chdir("/") != 0)
		_exit(126);
	own_limits(as_root);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(path, argv, envp);
	_exit(127);
}

static int spawn(struct helper *h, const char *resolved)
{
	long maxfd = sysconf(_SC_OPEN_MAX);
	int as_root = geteuid() == 0, sv[2];
	sigset_t all, old;

	if (maxfd < 0 || maxfd > (1 << 20)) /* for kernels without close_range */
		maxfd = 1 << 20;
	/* CLOEXEC: other threads of the host must not inherit our ends. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		pam_syslog(h->pamh, LOG_ERR, "socketpair: %m");
		return -1;
	}
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	if ((h->pid = fork()) == 0)
		child(resolved, sv[1], maxfd, as_root);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (h->pid < 0) {
		pam_syslog(h->pamh, LOG_ERR, "fork: %m");
		close(sv[0]);
		h->pid = 0;
		return -1;
	}
	h->fd = sv[0];
	return 0;
}

/* Waits for the socket, charging the wait to the budget. 0 = ready. */
static int wait_fd(struct helper *h, short events)
{
	struct pollfd p = { .fd = h->fd, .events = events };
	int64_t t0;
	int n;

	for (;;) {
		if (h->budget_ns <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		t0 = now_ns();
		n = poll(&p, 1, (int)((h->budget_ns + 999999) / 1000000));
		h->budget_ns -= now_ns() - t0;
		if (n > 0)
			return 0; /* POLLHUP/POLLERR too: send/recv tell which */
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* Moves n bytes to (out) or from the helper, waiting within the budget.
 * Returns n, fewer at end of stream, or -1 (errno). MSG_NOSIGNAL: a dead
 * helper must not raise SIGPIPE in sshd. */
static ssize_t xfer(struct helper *h, void *p, size_t n, int out)
{
	size_t done = 0;
	ssize_t r;

	while (done < n) {
		if (wait_fd(h, out ? POLLOUT : POLLIN) != 0)
			return -1;
		r = out ? send(h->fd, (char *)p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT)
			: recv(h->fd, (char *)p + done, n - done, MSG_DONTWAIT);
		if (r == 0)
			break;
		if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		done += r > 0 ? (size_t)r : 0;
	}
	return (ssize_t)done;
}

static int send_frame(struct helper *h, char type, const char *payload, size_t len)
{
	unsigned char hdr[5] = { (unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
				 (unsigned char)(len >> 8), (unsigned char)len };

	return xfer(h, hdr, sizeof hdr, 1) == sizeof hdr && xfer(h, (char *)payload, len, 1) == (ssize_t)len ? 0 : -1;
}

/* Logs why the exchange failed, once, with the user; returns -1. */
static int __attribute__((format(printf, 2, 3))) fail(struct helper *h, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pam_syslog(h->pamh, LOG_ERR, "user %s: %s %s: %s", h->user, h->what, h->path, msg);
	return -1;
}

static int io_fail(struct helper *h, const char *doing)
{
	if (errno == ETIMEDOUT)
		return fail(h, "%s: no answer within timeout=%d", doing, h->timeout);
	if (errno == EPROTO)
		return fail(h, "%s: stream ended in the middle of a frame", doing);
	return fail(h, "%s: %s", doing, strerror(errno));
}

/* Relays one prompt. No budget runs while the user types. */
static int ask(struct helper *h, int style, const char *prompt)
{
	char *resp = NULL;
	size_t n = 0;
	int rc;

	if (pam_prompt(h->pamh, style, &resp, "%s", prompt) == PAM_SUCCESS && resp != NULL) {
		n = strnlen(resp, MAX_ANSWER);
		rc = send_frame(h, 'A', resp, n);
	} else {
		rc = send_frame(h, 'N', NULL, 0);
	}
	if (resp != NULL) {
		explicit_bzero(resp, n + strlen(resp + n));
		free(resp);
	}
	return rc;
}

/* Runs the exchange after the request. Returns the verdict's PAM code, -1 on
 * a violation (logged), -2 when the verifier ended the stream before D, -3
 * when reading a frame failed (errno; EPROTO: the stream ended inside one).
 * -2 and -3 are not logged: the caller knows whether they fall back. */
static int converse(struct helper *h, int flags, char *buf)
{
	unsigned char hdr[5];
	uint32_t len;
	ssize_t r;

	for (int frames = 1;; frames++) {
		if ((r = xfer(h, hdr, sizeof hdr, 0)) == 0)
			return -2;
		if (r != sizeof hdr) {
			errno = r < 0 ? errno : EPROTO;
			return -3;
		}
		if (frames > MAX_FRAMES)
			return fail(h, "more than %d frames", MAX_FRAMES);
		if (hdr[0] == '\0' || strchr("PEIRTD", hdr[0]) == NULL)
			return fail(h, "unknown frame type 0x%02x", hdr[0]);
		len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
		if (len > MAX_PAYLOAD)
			return fail(h, "frame of %u bytes, more than %d", (unsigned)len, MAX_PAYLOAD);
		if ((r = xfer(h, buf, len, 0)) != (ssize_t)len) {
			errno = r < 0 ? errno : EPROTO;
			return -3;
		}
		if (h->later_ns > 0) { /* the first frame is in: the resident verifier is there */
			h->budget_ns = h->later_ns;
			h->later_ns = 0;
		}
		buf[len] = '\0';
		if (memchr(buf, '\0', len) != NULL)
			return fail(h, "NUL byte in a %c frame", hdr[0]);

		switch (hdr[0]) {
		case 'P':
		case 'E':
			h->relayed = 1;
			if (ask(h, hdr[0] == 'P' ? PAM_PROMPT_ECHO_OFF : PAM_PROMPT_ECHO_ON, buf) != 0)
				return io_fail(h, "sending an answer");
			break;
		case 'I':
		case 'R':
			if (!(flags & PAM_SILENT) || (hdr[0] == 'R' && h->errors_when_silent)) {
				h->relayed = 1;
				pam_prompt(h->pamh, hdr[0] == 'I' ? PAM_TEXT_INFO : PAM_ERROR_MSG, NULL, "%s", buf);
			}
			break;
		case 'T': /* for pam_unix use_first_pass further down the stack */
			h->relayed = 1;
			if (pam_set_item(h->pamh, PAM_AUTHTOK, buf) != PAM_SUCCESS)
				return fail(h, "cannot set PAM_AUTHTOK");
			break;
		default: /* D */
			for (size_t i = 0; i < sizeof verdicts / sizeof verdicts[0]; i++)
				if (strcmp(buf, verdicts[i].name) == 0)
					return verdicts[i].code;
			return PAM_AUTH_ERR;
		}
	}
}

static void kill_child(struct helper *h)
{
	if (h->pid <= 0)
		return;
	kill(h->pid, SIGKILL);
	while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
		;
	h->pid = 0;
}

/* Waits within the budget for our child to exit on its own. Returns its
 * wait status, or -1 (logged; run_helper then kills it). */
static int reap(struct helper *h)
{
	struct timespec nap = { 0, 20000 }; /* 20 us, doubling to 1 ms: the exit is usually quick */
	pid_t r;
	int st;

	for (;;) {
		if ((r = waitpid(h->pid, &st, WNOHANG)) == h->pid) {
			h->pid = 0;
			return st;
		}
		if (r < 0 && errno != EINTR) { /* ECHILD: someone else reaped it */
			h->pid = 0;
			return fail(h, "waitpid: %s", strerror(errno));
		}
		if (h->budget_ns <= 0)
			return fail(h, "did not exit within timeout=%d", h->timeout);
		nanosleep(&nap, NULL); /* it has closed its end: this is short */
		h->budget_ns -= nap.tv_nsec;
		if (nap.tv_nsec < 1000000)
			nap.tv_nsec *= 2;
	}
}

/* Logs how the helper ended when that was not a clean exit; 0 if it was. */
static int check_exit(struct helper *h, int st, const char *when)
{
	if (st < 0 || (WIFEXITED(st) && WEXITSTATUS(st) == 0 && when == NULL))
		return st;
	when = when != NULL ? when : "after the verdict";
	if (WIFSIGNALED(st))
		return fail(h, "was killed by signal %d %s", WTERMSIG(st), when);
	return fail(h, "exited with status %d %s", WEXITSTATUS(st), when);
}

/* After D: the verifier must end the stream with nothing more. 0 if it did. */
static int end_of_stream(struct helper *h)
{
	ssize_t n;
	char c;

	if ((n = xfer(h, &c, 1, 0)) == 0)
		return 0;
	return n < 0 ? io_fail(h, "after the verdict") : fail(h, "sent data after the verdict");
}

static int run_helper(struct helper *h, int flags, const char *resolved, const struct request *req)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL }, saved;
	char *buf = malloc(MAX_PAYLOAD + 1);
	int rc = PAM_SYSTEM_ERR, verdict = -1;

	if (buf == NULL)
		return PAM_BUF_ERR;
	/* SIG_IGN in the host would let the kernel reap our child before we read
	 * its status; a host handler calling waitpid(-1) would steal it. */
	sigaction(SIGCHLD, &dfl, &saved);
	if (spawn(h, resolved) != 0)
		goto out;

	if (send_frame(h, 'Q', req->p, req->len) != 0)
		io_fail(h, "sending the request");
	else if ((verdict = converse(h, flags, buf)) == -3)
		io_fail(h, "reading a frame");
	if (verdict == -2) {
		check_exit(h, reap(h), "before a verdict");
	} else if (verdict >= 0) {
		/* D is the last frame: end of stream must follow, then a clean exit. */
		if (end_of_stream(h) == 0 && check_exit(h, reap(h), NULL) == 0)
			rc = verdict;
	}
	kill_child(h); /* a no-op when reaped */
	close(h->fd);
out:
	sigaction(SIGCHLD, &saved, NULL);
	explicit_bzero(buf, MAX_PAYLOAD + 1); /* a T frame carried a password */
	free(buf);
	return rc;
}

/*
 * The resident verifier (docs/protocol.md, "Socket transport"). Not a PAM code:
 * the helper decides instead. The socket path falls back only while nothing
 * of the exchange reached the user or PAM; after that a failure denies.
 */
#define FALLBACK (-100)

/* Why st, the socket or its directory, must not be used; NULL if it may. */
static const char *unsafe_socket(const struct stat *st, int is_dir)
{
	if (S_ISLNK(st->st_mode))
		return "is a symlink";
	if (is_dir ? !S_ISDIR(st->st_mode) : !S_ISSOCK(st->st_mode))
		return is_dir ? "is not a directory" : "is not a socket";
	if (st->st_uid != 0)
		return "is not owned by root";
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return "is group- or world-writable";
	return NULL;
}

/* Checks the socket, then connects within the budget (connect_ms) and checks
 * that root listens. Sets h->fd and returns 0, or returns -1 with the reason
 * in why; only a missing socket goes unlogged (the debug line says it). */
static int connect_socket(struct helper *h, const char *path, char *why, size_t wn)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof sa.sun_path], *slash;
	struct ucred peer;
	socklen_t len = sizeof peer;
	const char *bad;
	struct stat st;
	int err = 0;

	/* lstat, and S_ISSOCK below: a symlink is refused, never followed. */
	if (lstat(path, &st) != 0) {
		if (errno == ENOENT) {
			snprintf(why, wn, "no socket %s", path);
			return -1;
		}
		snprintf(why, wn, "socket %s: %m", path);
		goto warn;
	}
	if ((bad = unsafe_socket(&st, 0)) != NULL) {
		snprintf(why, wn, "socket %s %s (owner uid %u, mode %04o)", path, bad, (unsigned)st.st_uid,
			 (unsigned)(st.st_mode & 07777));
		goto warn;
	}
	/* parse_options made it absolute and shorter than sun_path. */
	memcpy(dir, path, strlen(path) + 1);
	slash = strrchr(dir, '/');
	slash[slash == dir] = '\0';
	if (lstat(dir, &st) != 0) {
		snprintf(why, wn, "socket directory %s: %m", dir);
		goto warn;
	}
	if ((bad = unsafe_socket(&st, 1)) != NULL) {
		snprintf(why, wn, "socket directory %s %s (owner uid %u, mode %04o)", dir, bad, (unsigned)st.st_uid,
			 (unsigned)(st.st_mode & 07777));
		goto warn;
	}

	if ((h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		snprintf(why, wn, "socket: %m");
		goto warn;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (connect(h->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		if (errno != EINPROGRESS && errno != EINTR)
			err = errno;
		else if (wait_fd(h, POLLOUT) != 0)
			err = errno;
		else if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &(socklen_t){ sizeof err }) != 0)
			err = errno;
	}
	if (err != 0) {
		snprintf(why, wn, "connect to %s: %s", path,
			 err == ETIMEDOUT ? "no connection within connect_ms" : strerror(err));
		goto close;
	}
	/* The credentials of whoever called listen(): a root-owned socket in a
	 * root-owned directory should mean root, and this makes sure. */
	if (getsockopt(h->fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
		snprintf(why, wn, "SO_PEERCRED on %s: %m", path);
		goto close;
	}
	if (peer.uid != 0) {
		snprintf(why, wn, "the verifier on %s runs as uid %u, not root", path, (unsigned)peer.uid);
		goto close;
	}
	return 0;
close:
	close(h->fd);
	h->fd = -1;
warn:
	pam_syslog(h->pamh, LOG_WARNING, "user %s: resident verifier: %s; using the helper", h->user, why);
	return -1;
}

/* The exchange with the resident verifier: the request and its first frame
 * within connect_ms, the rest within timeout= as for the helper. Returns the
 * PAM code, or FALLBACK with the reason in why (logged) when the verifier is
 * absent, unsafe, refuses, stays silent, or goes away before anything reached
 * the user. A verdict counts only when end of stream follows D. */
static int run_socket(struct helper *h, int flags, const struct options *o, const struct request *req, char *why,
		      size_t wn)
{
	int rc = PAM_SYSTEM_ERR, verdict;
	char *buf;

	h->budget_ns = (int64_t)o->connect_ms * 1000000;
	if (connect_socket(h, o->socket, why, wn) != 0)
		return FALLBACK;
	if ((buf = malloc(MAX_PAYLOAD + 1)) == NULL) {
		close(h->fd);
		return PAM_BUF_ERR;
	}
	h->budget_ns = (int64_t)o->connect_ms * 1000000;
	h->later_ns = (int64_t)o->timeout * NSEC;
	verdict = send_frame(h, 'Q', req->p, req->len) == 0 ? converse(h, flags, buf) : -3;
	if (verdict >= 0) {
		if (end_of_stream(h) == 0)
			rc = verdict;
	} else if (verdict < -1 && !h->relayed) {
		if (verdict == -2)
			snprintf(why, wn, "%s closed the connection without answering", o->socket);
		else if (errno == ETIMEDOUT)
			snprintf(why, wn, "%s did not answer within %s=%d", o->socket,
				 h->later_ns > 0 ? "connect_ms" : "timeout", h->later_ns > 0 ? o->connect_ms : o->timeout);
		else
			snprintf(why, wn, "%s: %s", o->socket,
				 errno == EPROTO ? "stream ended in the middle of a frame" : strerror(errno));
		pam_syslog(h->pamh, LOG_WARNING, "user %s: resident verifier %s; using the helper", h->user, why);
		rc = FALLBACK;
	} else if (verdict == -2) {
		fail(h, "ended the stream before a verdict");
	} else if (verdict == -3) {
		io_fail(h, "reading a frame");
	}
	close(h->fd);
	explicit_bzero(buf, MAX_PAYLOAD + 1); /* a T frame carried a password */
	free(buf);
	return rc;
}

EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct options o;
	struct helper h;
	struct request *req = NULL;
	const char *user = NULL;
	char *resolved = NULL, why[400] = "socket=none";
	const char *why_not_socket = NULL; /* set when the helper decided */
	int rc;

	if ((rc = parse_options(pamh, argc, argv, &o)) != PAM_SUCCESS)
		return rc;
	rc = pam_get_user(pamh, &user, NULL);
	if (rc == PAM_CONV_AGAIN)
		return PAM_INCOMPLETE;
	if (rc != PAM_SUCCESS || user == NULL || *user == '\0') {
		pam_syslog(pamh, LOG_ERR, "cannot get the user name: %s", pam_strerror(pamh, rc));
		return rc != PAM_SUCCESS ? rc : PAM_USER_UNKNOWN;
	}
	rc = PAM_SYSTEM_ERR;
	if (check_path(pamh, "helper", o.helper, 1, &resolved) != 0 ||
	    check_path(pamh, "config", o.config, 0, NULL) != 0)
		goto out;
	if ((req = calloc(1, sizeof *req)) == NULL) {
		rc = PAM_BUF_ERR;
		goto out;
	}
	if ((rc = build_request(pamh, &o, argc, argv, user, req)) != PAM_SUCCESS)
		goto out;
	rc = FALLBACK;
	if (o.socket != NULL) {
		h = (struct helper){ .pamh = pamh, .what = "resident verifier", .path = o.socket, .user = user,
				     .timeout = o.timeout, .fd = -1, .errors_when_silent = o.errors_when_silent };
		rc = run_socket(&h, flags, &o, req, why, sizeof why);
	}
	if (rc == FALLBACK) {
		h = (struct helper){ .pamh = pamh, .what = "helper", .path = o.helper, .user = user,
				     .timeout = o.timeout, .fd = -1, .budget_ns = (int64_t)o.timeout * NSEC,
				     .errors_when_silent = o.errors_when_silent };
		rc = run_helper(&h, flags, resolved, req);
		why_not_socket = why;
	}
	if (rc == PAM_MAXTRIES && o.maxtries_as_autherr)
		rc = PAM_AUTH_ERR;
	if (o.debug && why_not_socket != NULL)
		pam_syslog(pamh, LOG_DEBUG, "user %s: %s via helper %s (%s)", user, pam_strerror(pamh, rc), o.helper,
			   why_not_socket);
	else if (o.debug)
		pam_syslog(pamh, LOG_DEBUG, "user %s: %s via socket %s", user, pam_strerror(pamh, rc), o.socket);
out:
	if (req != NULL)
		explicit_bzero(req, sizeof *req);
	free(req);
	free(resolved);
	return rc;
}

/* Every other entry point answers in C, without starting the helper. */
#define ANSWER(fn, code)                                                          \
	EXPORT int fn(pam_handle_t *pamh, int flags, int argc, const char **argv) \
	{                                                                         \
		(void)pamh, (void)flags, (void)argc, (void)argv;                  \
		return code;                                                      \
	}
ANSWER(pam_sm_setcred, PAM_SUCCESS)
ANSWER(pam_sm_acct_mgmt, PAM_IGNORE)
ANSWER(pam_sm_open_session, PAM_IGNORE)
ANSWER(pam_sm_close_session, PAM_IGNORE)
ANSWER(pam_sm_chauthtok, PAM_IGNORE)
