/* Two threads, each with its own engine (the rule in corehead.h), generating and reading
 * attention at the same time (tests/test_capi.py). Also checks that corehead_last_error() is
 * per thread: each thread fails differently, waits until the other has failed too, then reads
 * its own message.
 *
 *   two_threads MODEL PROMPT MAX_TOKENS
 * stdout: "thread T generated ID ..." and "thread T attention V ..." (the last prompt token's
 * attention, [n_layer][n_head][n_kv] flattened), then "ok".
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corehead/corehead.h"

/* A two-party rendezvous (pthread_barrier_t is missing on macOS). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_arrived = 0;

static void rendezvous(void) {
    pthread_mutex_lock(&g_lock);
    g_arrived += 1;
    pthread_cond_broadcast(&g_cond);
    while (g_arrived < 2) pthread_cond_wait(&g_cond, &g_lock);
    pthread_mutex_unlock(&g_lock);
}

struct job {
    int index;
    const char *model;
    const char *prompt;
    int max_tokens;
    int32_t ids[256];
    size_t n_ids;
    float attention[4096];  /* [n_layer][n_head][n_kv] of the last prompt token */
    size_t n_attention;
    char error[512];  /* empty = success */
};

static void *run(void *arg) {
    struct job *j = (struct job *)arg;
    /* Thread 0 fails with a NULL model, thread 1 with a missing file. */
    corehead_engine *bad = corehead_engine_load(j->index == 0 ? NULL : "/no/such/thread1.gguf", NULL, NULL);
    const char *expect = j->index == 0 ? "is NULL" : "thread1.gguf";
    rendezvous();
    if (bad || !strstr(corehead_last_error(), expect)) {
        snprintf(j->error, sizeof j->error, "last error is not per thread: '%s'", corehead_last_error());
        return NULL;
    }

    corehead_engine_params p = corehead_engine_default_params();
    p.n_threads = 1;
    p.n_ctx = 256;
    corehead_engine *eng = corehead_engine_load(j->model, NULL, &p);
    if (!eng) {
        snprintf(j->error, sizeof j->error, "load: %s", corehead_last_error());
        return NULL;
    }
    corehead_prompt prompt = {j->prompt, NULL, 0, NULL, 0};
    corehead_generate_params g = corehead_generate_default_params();
    g.max_tokens = j->max_tokens;
    g.stop_at_eog = false;
    for (int round = 0; round < 3 && !j->error[0]; ++round) {  /* a few rounds: the threads overlap */
        if (corehead_generate(eng, &prompt, &g, j->ids, 256, &j->n_ids) != COREHEAD_OK) {
            snprintf(j->error, sizeof j->error, "generate: %s", corehead_last_error());
            break;
        }
        if (corehead_attention(eng, &prompt, NULL, 0, NULL, 0, j->attention, 4096, NULL, &j->n_attention) != COREHEAD_OK) {
            snprintf(j->error, sizeof j->error, "attention: %s", corehead_last_error());
        }
    }
    corehead_engine_free(eng);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT MAX_TOKENS\n", argv[0]);
        return 2;
    }
    static struct job jobs[2];
    pthread_t threads[2];
    for (int t = 0; t < 2; ++t) {
        jobs[t].index = t;
        jobs[t].model = argv[1];
        jobs[t].prompt = argv[2];
        jobs[t].max_tokens = atoi(argv[3]);
        if (pthread_create(&threads[t], NULL, run, &jobs[t]) != 0) return 1;
    }
    int ok = 1;
    for (int t = 0; t < 2; ++t) pthread_join(threads[t], NULL);
    for (int t = 0; t < 2; ++t) {
        if (jobs[t].error[0]) {
            printf("thread %d error %s\n", t, jobs[t].error);
            ok = 0;
            continue;
        }
        printf("thread %d generated", t);
        for (size_t i = 0; i < jobs[t].n_ids; ++i) printf(" %d", jobs[t].ids[i]);
        printf("\nthread %d attention", t);
        for (size_t i = 0; i < jobs[t].n_attention; ++i) printf(" %.9g", jobs[t].attention[i]);
        printf("\n");
    }
    printf(ok ? "ok\n" : "failed\n");
    return ok ? 0 : 1;
}
