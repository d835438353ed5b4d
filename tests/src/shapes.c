/* Workload shapes for the fidelity tests: shapes MODE SECONDS.
 * Every thread is created first and waits at a gate; a line on stdin
 * opens it; the threads work for SECONDS of wall time and park; when all
 * have parked (and every forked child has parked too) the main thread
 * prints "done" and the children's PIDs, then waits for stdin to close,
 * releases everything, reaps the children and exits.
 * Modes: timers (spin/sleep threads on nanosleep), queue (a mutex+condvar
 * task queue feeding a pool: the libuv pattern), pingpong (two threads
 * over pipes), forkexec (children forked and exec'd while it runs).
 * `shapes child READY_FD PARK_FD SECONDS` is what forkexec execs. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double secs, deadline;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go, release_, parked;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static long cpu_ns(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }
static void burn(long ns) { long end = cpu_ns() + ns; volatile unsigned long x = 0; while (cpu_ns() < end) for (int i = 0; i < 200; i++) x++; }
static void nap(long ns) { struct timespec t = {ns / 1000000000L, ns % 1000000000L}; nanosleep(&t, 0); }
static void name(const char *n) { prctl(PR_SET_NAME, n); }

static void wait_go(void) { pthread_mutex_lock(&m); while (!go) pthread_cond_wait(&cv, &m); pthread_mutex_unlock(&m); }
static void park(void) {
    pthread_mutex_lock(&m);
    parked++;
    pthread_cond_broadcast(&cv);
    while (!release_) pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
}

/* timers: thread i spins (i+1)*300 us of CPU, then sleeps (i+1) ms. */
static void *ticker(void *a) {
    long i = (long)a; char n[16]; snprintf(n, sizeof n, "tick%ld", i); name(n);
    wait_go();
    while (now() < deadline) { burn((i + 1) * 300000L); nap((i + 1) * 1000000L); }
    park(); return 0;
}

/* queue: the main thread posts batches of tasks and waits for them. */
static pthread_mutex_t qm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER, qdone = PTHREAD_COND_INITIALIZER;
static long pending, running_tasks; static int qstop;
static void *worker(void *a) {
    long i = (long)a; char n[16]; snprintf(n, sizeof n, "pool%ld", i); name(n);
    wait_go();
    for (;;) {
        pthread_mutex_lock(&qm);
        while (!pending && !qstop) pthread_cond_wait(&qcv, &qm);
        if (qstop && !pending) { pthread_mutex_unlock(&qm); break; }
        pending--; running_tasks++;
        pthread_mutex_unlock(&qm);
        burn(50000L + (i * 37 % 5) * 100000L);   /* 50 .. 450 us */
        pthread_mutex_lock(&qm);
        running_tasks--;
        if (!pending && !running_tasks) pthread_cond_signal(&qdone);
        pthread_mutex_unlock(&qm);
    }
    park(); return 0;
}
static void producer(void) {
    for (int round = 0; now() < deadline; round++) {
        burn(100000L);                               /* the loop's own work */
        pthread_mutex_lock(&qm);
        pending += 1 + round % 8;
        pthread_cond_broadcast(&qcv);
        while (pending || running_tasks) pthread_cond_wait(&qdone, &qm);
        pthread_mutex_unlock(&qm);
        if (round % 4 == 0) nap(500000L);
    }
    pthread_mutex_lock(&qm); qstop = 1; pthread_cond_broadcast(&qcv); pthread_mutex_unlock(&qm);
}

/* pingpong: a byte back and forth over two pipes. */
static int ab[2], ba[2];
static void *ponger(void *a) {
    char c; name("pong");
    wait_go();
    while (read(ab[0], &c, 1) == 1 && c == 'p') { burn(5000); if (write(ba[1], &c, 1) != 1) break; }
    park(); return a;
}
static void *pinger(void *a) {
    char c = 'p'; name("ping");
    wait_go();
    while (now() < deadline) { if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) break; burn(5000); }
    c = 'q'; if (write(ab[1], &c, 1) != 1) perror("write");
    park(); return a;
}

/* forkexec child: spins and naps with a second thread, then parks. */
static void *child_thread(void *a) {
    name("fx-thread");
    while (now() < deadline) { burn(200000L); nap(2000000L); }
    park(); return a;
}
static int child(int ready, int parkfd) {
    name("fx-child");
    pthread_t t; pthread_create(&t, 0, child_thread, 0);
    while (now() < deadline) { burn(300000L); nap(1000000L); }
    pthread_mutex_lock(&m); while (parked < 1) pthread_cond_wait(&cv, &m); pthread_mutex_unlock(&m);
    char c = 'r', x;
    if (write(ready, &c, 1) != 1) return 1;
    if (read(parkfd, &x, 1) < 0) return 1;   /* EOF: released */
    pthread_mutex_lock(&m); release_ = 1; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&m);
    pthread_join(t, 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: shapes MODE SECONDS\n"); return 2; }
    const char *mode = argv[1];
    if (!strcmp(mode, "child") && argc == 5) {
        deadline = now() + atof(argv[4]);
        return child(atoi(argv[2]), atoi(argv[3]));
    }
    secs = atof(argv[2]);
    pthread_t t[8]; int n = 0;
    if (!strcmp(mode, "timers")) for (long i = 0; i < 4; i++) pthread_create(&t[n++], 0, ticker, (void *)i);
    else if (!strcmp(mode, "queue")) for (long i = 0; i < 4; i++) pthread_create(&t[n++], 0, worker, (void *)i);
    else if (!strcmp(mode, "pingpong")) {
        if (pipe(ab) || pipe(ba)) return 1;
        pthread_create(&t[n++], 0, pinger, 0);
        pthread_create(&t[n++], 0, ponger, 0);
    } else if (strcmp(mode, "forkexec")) { fprintf(stderr, "unknown mode %s\n", mode); return 2; }
    /* SHAPES_MAIN names the process (its main thread) for tests that select by name. */
    name(getenv("SHAPES_MAIN") ? getenv("SHAPES_MAIN") : "shapes-main");
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    deadline = now() + secs;
    pthread_mutex_lock(&m); go = 1; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&m);

    pid_t kids[16]; int nkids = 0, ready[2], parkp[2];
    if (!strcmp(mode, "queue")) producer();
    else if (!strcmp(mode, "forkexec")) {
        if (pipe(ready) || pipe(parkp)) return 1;
        /* A child every 150 ms, each running until the common deadline. */
        while (now() < deadline - 0.2 && nkids < 16) {
            burn(2000000L);
            pid_t p = fork();
            if (p < 0) return 1;
            if (p == 0) {
                char r[16], k[16], s[32];
                snprintf(r, sizeof r, "%d", ready[1]); snprintf(k, sizeof k, "%d", parkp[0]);
                snprintf(s, sizeof s, "%f", deadline - now());
                close(parkp[1]);
                execl("/proc/self/exe", "shapes", "child", r, k, s, (char *)0);
                _exit(127);
            }
            kids[nkids++] = p;
            nap(150000000L);
        }
        close(parkp[0]);
        for (int i = 0; i < nkids; i++) { char c; if (read(ready[0], &c, 1) != 1) return 1; }
    }
    pthread_mutex_lock(&m); while (parked < n) pthread_cond_wait(&cv, &m); pthread_mutex_unlock(&m);
    nap(100000000L);
    printf("done");
    for (int i = 0; i < nkids; i++) printf(" %d", kids[i]);
    printf("\n"); fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {}
    pthread_mutex_lock(&m); release_ = 1; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&m);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    if (nkids) close(parkp[1]);
    int bad = 0;
    for (int i = 0; i < nkids; i++) { int st; if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st)) bad = 1; }
    return bad;
}
