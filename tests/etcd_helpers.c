/*
 * etcd_helpers.c - real etcd members for tests (etcd_helpers.h).
 */
#include "etcd_helpers.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The clusters running, for the exit handler. */
static struct etcd_cluster *running[16];
static int atexit_done;

static void say(char *msg, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!msg || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void stop_all(void)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i])
			etcd_cluster_stop(running[i]);
}

static void track(struct etcd_cluster *c, int on)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
		if (on && !running[i]) {
			running[i] = c;
			break;
		}
		if (!on && running[i] == c)
			running[i] = NULL;
	}
	if (on && !atexit_done)
		atexit_done = atexit(stop_all) == 0;
}

/* A free port of 127.0.0.1 from the kernel, its socket left open in *fd
   so that the next call gets another one. */
static int grab_port(int *fd)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(*fd, (struct sockaddr *)&a, &alen))
		return -1;
	return ntohs(a.sin_port);
}

int etcd_free_port(void)
{
	int fd, port = grab_port(&fd);

	if (fd >= 0)
		close(fd);
	return port;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	remove(p);
	return 0;
}

/* The tail of member i's log, for a message. */
static void log_tail(struct etcd_cluster *c, size_t i, char *out, size_t len)
{
	char path[PATH_MAX + 32];
	long size;
	size_t got;
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/m%zu.log", c->dir, i);
	f = fopen(path, "r");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > (long)len - 1 ? size - (long)len + 1 : 0, SEEK_SET);
	got = fread(out, 1, len - 1, f);
	out[got] = '\0';
	fclose(f);
}

/* exec etcd as member i (in the child). */
static void exec_member(struct etcd_cluster *c, size_t i, pid_t parent)
{
	char name[16], data[PATH_MAX + 32], log[PATH_MAX + 32];
	char curl[64], purl[64], cluster[ETCD_MAX_MEMBERS * 64] = "";
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	for (size_t j = 0; j < c->n; j++)
		snprintf(cluster + strlen(cluster),
			 sizeof(cluster) - strlen(cluster),
			 "%sm%zu=http://127.0.0.1:%d", j ? "," : "", j,
			 c->m[j].peer_port);
	snprintf(name, sizeof(name), "m%zu", i);
	snprintf(data, sizeof(data), "%s/m%zu", c->dir, i);
	snprintf(log, sizeof(log), "%s/m%zu.log", c->dir, i);
	snprintf(curl, sizeof(curl), "http://127.0.0.1:%d",
		 c->m[i].client_port);
	snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", c->m[i].peer_port);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execlp("etcd", "etcd", "--name", name, "--data-dir", data,
	       "--listen-client-urls", curl, "--advertise-client-urls", curl,
	       "--listen-peer-urls", purl, "--initial-advertise-peer-urls",
	       purl, "--initial-cluster", cluster, "--initial-cluster-state",
	       "new", "--initial-cluster-token", c->dir, "--logger", "zap",
	       "--log-outputs", "stderr", (char *)NULL);
	fprintf(stderr, "exec etcd: %s\n", strerror(errno));
	_exit(127);
}

static int spawn(struct etcd_cluster *c, size_t i, char *msg, size_t len)
{
	pid_t parent = getpid(), pid = fork();

	if (pid < 0) {
		say(msg, len, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0)
		exec_member(c, i, parent);
	c->m[i].pid = pid;
	return 0;
}

/* Is member i healthy ({"health":"true"} at /health)? */
static int healthy(struct etcd_member *m)
{
	char url[64], body[256] = "";
	FILE *f = fmemopen(body, sizeof(body) - 1, "w");
	CURL *h = curl_easy_init();
	CURLcode cc = CURLE_FAILED_INIT;

	if (f && h) {
		snprintf(url, sizeof(url), "http://%s/health", m->endpoint);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
		cc = curl_easy_perform(h);
	}
	if (h)
		curl_easy_cleanup(h);
	if (f)
		fclose(f);
	return cc == CURLE_OK && strstr(body, "\"health\":\"true\"");
}

int etcd_cluster_wait_healthy(struct etcd_cluster *c, unsigned ms, char *msg,
			      size_t len)
{
	uint64_t deadline = now_ms() + ms;
	char tail[300];
	int status;

	for (size_t i = 0; i < c->n; i++) {
		while (c->m[i].pid && !healthy(&c->m[i])) {
			if (waitpid(c->m[i].pid, &status, WNOHANG) ==
			    c->m[i].pid) {
				c->m[i].pid = 0;
				log_tail(c, i, tail, sizeof(tail));
				say(msg, len, "etcd member %zu exited: ...%s",
				    i, tail);
				return -1;
			}
			if (now_ms() > deadline) {
				say(msg, len,
				    "etcd member %zu at %s: not "
				    "healthy within %u ms",
				    i, c->m[i].endpoint, ms);
				return -1;
			}
			pause_ms(20); /* poll */
		}
	}
	return 0;
}

/* Pick free ports for every member and make the directory. */
static int prepare(struct etcd_cluster *c, size_t n, const char *root,
		   char *msg, size_t len)
{
	int fds[2 * ETCD_MAX_MEMBERS], rc = 0;

	memset(c, 0, sizeof(*c));
	c->n = n;
	if (!root)
		root = getenv("RECFS_TEST_TMPDIR");
	if (!root)
		root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(c->dir, sizeof(c->dir), "%s/recfs-etcd.XXXXXX", root);
	if (!mkdtemp(c->dir)) {
		say(msg, len, "mkdtemp %s: %s", c->dir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < 2 * n; i++) {
		int port = grab_port(&fds[i]);

		rc |= port < 0;
		if (i % 2)
			c->m[i / 2].peer_port = port;
		else
			c->m[i / 2].client_port = port;
	}
	for (size_t i = 0; i < 2 * n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (size_t i = 0; i < n; i++) {
		snprintf(c->m[i].endpoint, sizeof(c->m[i].endpoint),
			 "127.0.0.1:%d", c->m[i].client_port);
		c->endpoints[i] = c->m[i].endpoint;
		snprintf(c->uri_members + strlen(c->uri_members),
			 sizeof(c->uri_members) - strlen(c->uri_members),
			 "%s%s", i ? "," : "", c->m[i].endpoint);
	}
	if (rc)
		say(msg, len, "no free port: %s", strerror(errno));
	return rc ? -1 : 0;
}

static int start_once(struct etcd_cluster *c, size_t n, const char *root,
		      char *msg, size_t len)
{
	if (prepare(c, n, root, msg, len))
		return -1;
	track(c, 1);
	for (size_t i = 0; i < n; i++)
		if (spawn(c, i, msg, len))
			return -1;
	return etcd_cluster_wait_healthy(c, 30000, msg, len);
}

int etcd_cluster_start(struct etcd_cluster *c, size_t n, const char *root,
		       char *msg, size_t len)
{
	if (n < 1 || n > ETCD_MAX_MEMBERS) {
		say(msg, len, "%zu members: 1..%d", n, ETCD_MAX_MEMBERS);
		return -1;
	}
	/* a port taken between its choice and etcd's bind: new ports */
	for (int tries = 0; tries < 3; tries++) {
		if (start_once(c, n, root, msg, len) == 0)
			return 0;
		etcd_cluster_stop(c);
	}
	return -1;
}

int etcd_member_stop(struct etcd_cluster *c, size_t i)
{
	uint64_t deadline = now_ms() + 10000;
	pid_t pid = c->m[i].pid;
	int status;

	if (!pid)
		return 0;
	kill(pid, SIGTERM);
	kill(pid, SIGCONT); /* a frozen one */
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		pause_ms(10); /* poll */
	}
	c->m[i].pid = 0;
	return 0;
}

int etcd_member_freeze(struct etcd_cluster *c, size_t i, int frozen)
{
	if (!c->m[i].pid)
		return -1;
	return kill(c->m[i].pid, frozen ? SIGSTOP : SIGCONT);
}

int etcd_member_start(struct etcd_cluster *c, size_t i, char *msg, size_t len)
{
	if (c->m[i].pid)
		return 0;
	if (spawn(c, i, msg, len))
		return -1;
	return etcd_cluster_wait_healthy(c, 30000, msg, len);
}

void etcd_cluster_stop(struct etcd_cluster *c)
{
	for (size_t i = 0; i < c->n; i++)
		etcd_member_stop(c, i);
	if (c->dir[0])
		nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	c->dir[0] = '\0';
	track(c, 0);
}
