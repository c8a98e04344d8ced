/* Tests of stored mirrors from C, against real registries and a real PostgreSQL started by
 * ffi/tests/run.sh (tests/src/bin/regmirror-test-services.rs, via the environment):
 * on a SQLite file and on PostgreSQL, add two mirrors, run an in-process worker until both
 * succeed while the notifier callback is blocked (it stalls nothing), read statuses and logs,
 * preview, sync one in this thread, "sync now" and cancel a mirror whose source takes 3 s per
 * blob, cancel a stored sync from another thread, update, disable, delete; `regmirror mirror
 * list --json` on the same SQLite file sees the same mirrors. Prints "N passed, N failed".
 * `mirrors sqlite` or `mirrors postgres` runs the scenario on that store only (run.sh runs each
 * store once, one per linkage); without an argument it runs on both. */
#define _DEFAULT_SOURCE /* mkdtemp, usleep */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "regmirror.h"

static int passed, failed;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

static const char *source, *slow_source, *dest, *cli;

static const char *env(const char *name) {
    const char *value = getenv(name);
    if (!value || !*value) {
        fprintf(stderr, "$%s is not set: run this test through ffi/tests/run.sh\n", name);
        exit(2);
    }
    return value;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The notifier: records every event; blocks on its first call until released. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool released;
    int count;
    char log[64][1024];
} events = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, {{0}}};

static void on_event(void *userdata, const char *json) {
    CHECK(userdata == &events, "userdata %p", userdata);
    pthread_mutex_lock(&events.lock);
    while (!events.released) {
        pthread_cond_wait(&events.changed, &events.lock);
    }
    if (events.count < 64) {
        snprintf(events.log[events.count], sizeof events.log[0], "%s", json);
    }
    events.count++;
    pthread_cond_broadcast(&events.changed);
    pthread_mutex_unlock(&events.lock);
}

static void release_events(bool released) {
    pthread_mutex_lock(&events.lock);
    events.released = released;
    events.count = 0;
    pthread_cond_broadcast(&events.changed);
    pthread_mutex_unlock(&events.lock);
}

/* Whether an event with both fragments arrived within `seconds`. */
static bool saw_event(const char *kind, const char *mirror, double seconds) {
    char want_kind[64], want_mirror[128];
    snprintf(want_kind, sizeof want_kind, "\"event\":\"%s\"", kind);
    snprintf(want_mirror, sizeof want_mirror, "\"mirror_id\":\"%s\"", mirror);
    double deadline = now() + seconds;
    bool seen = false;
    pthread_mutex_lock(&events.lock);
    while (!seen) {
        for (int i = 0; i < events.count && i < 64; i++) {
            if (strstr(events.log[i], want_kind) && strstr(events.log[i], want_mirror)) {
                seen = true;
            }
        }
        if (seen || now() > deadline) {
            break;
        }
        pthread_mutex_unlock(&events.lock);
        usleep(50000);
        pthread_mutex_lock(&events.lock);
    }
    pthread_mutex_unlock(&events.lock);
    return seen;
}

/* The JSON of mirror `id` (to free), or NULL. */
static char *get(regmirror_mirrors *m, const char *id) {
    char *view = NULL;
    regmirror_result rc = regmirror_mirrors_get(m, id, &view);
    CHECK(rc == REGMIRROR_OK, "get(%s) = %s: %s", id, regmirror_result_name(rc),
          regmirror_last_error_message());
    return view;
}

/* Wait up to `seconds` for mirror `id` to have `"status":"STATUS"`. */
static bool wait_status(regmirror_mirrors *m, const char *id, const char *status, double seconds) {
    char want[64];
    snprintf(want, sizeof want, "\"status\":\"%s\"", status);
    double deadline = now() + seconds;
    for (;;) {
        char *view = get(m, id);
        bool ok = view && strstr(view, want);
        if (!ok && now() > deadline) {
            fprintf(stderr, "%s is not %s after %.0fs: %s\n", id, status, seconds, view);
        }
        regmirror_string_free(view);
        if (ok) {
            return true;
        }
        if (now() > deadline) {
            return false;
        }
        usleep(100000);
    }
}

static void add(regmirror_mirrors *m, const char *json) {
    char *view = NULL;
    regmirror_result rc = regmirror_mirrors_add(m, json, &view);
    CHECK(rc == REGMIRROR_OK, "add(%s) = %s: %s", json, regmirror_result_name(rc),
          regmirror_last_error_message());
    CHECK(view && strstr(view, "\"status\":\"NEVER_RUN\""), "[%s]", view);
    CHECK(view && !strstr(view, "s3cr3t"), "a password in [%s]", view);
    regmirror_string_free(view);
}

static regmirror_mirrors *open_store(const char *state) {
    regmirror_mirrors_builder *b = NULL;
    regmirror_mirrors *m = NULL;
    CHECK(regmirror_mirrors_builder_new(state, dest, &b) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirrors_builder_set_dest_tls_verify(b, false) == REGMIRROR_OK, "tls");
    CHECK(regmirror_mirrors_builder_set_notifier(b, on_event, &events) == REGMIRROR_OK, "notifier");
    CHECK(regmirror_mirrors_builder_open(b, &m) == REGMIRROR_OK, "open(%s): %s", state,
          regmirror_last_error_message());
    return m;
}

struct canceller {
    regmirror_cancel *cancel;
};

static void *cancel_soon(void *arg) {
    usleep(500000);
    regmirror_cancel_cancel(((struct canceller *)arg)->cancel);
    return NULL;
}

/* Whether `json` has `"id": "ID"` (compact or pretty-printed). */
static bool has_id(const char *json, const char *id) {
    char compact[128], pretty[128];
    snprintf(compact, sizeof compact, "\"id\":\"%s\"", id);
    snprintf(pretty, sizeof pretty, "\"id\": \"%s\"", id);
    return json && (strstr(json, compact) || strstr(json, pretty));
}

/* What `regmirror mirror list --json --state STATE` prints (static buffer). */
static const char *cli_list(const char *state) {
    static char out[65536];
    char command[1024];
    snprintf(command, sizeof command, "'%s' mirror list --json --state '%s'", cli, state);
    FILE *p = popen(command, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int status = p ? pclose(p) : -1;
    CHECK(status == 0, "%s exited with %d: %s", command, status, out);
    return out;
}

/* The scenario on store `state`, mirror ids under `ns`; the slow mirror takes the tags
 * `slow_first` (run by the worker) and `slow_second` (synced here) of library/slow. */
static void scenario(const char *state, const char *ns, const char *slow_first,
                     const char *slow_second) {
    fprintf(stderr, "-- %s\n", state);
    char app[64], tools[64], slow[64], fragment[128];
    snprintf(app, sizeof app, "%s/app", ns);
    snprintf(tools, sizeof tools, "%s/tools", ns);
    snprintf(slow, sizeof slow, "%s/slow", ns);
    release_events(false);
    regmirror_mirrors *m = open_store(state);
    char json[1024];
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"source\":\"%s/library/app\",\"tags\":[\"v1.*\"],"
             "\"interval\":\"1h\",\"tls_verify\":false}",
             app, source);
    add(m, json);
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"source\":\"%s/library/tools\",\"tags\":\"v1\","
             "\"interval\":3600,\"start\":\"2020-01-01T00:00:00Z\",\"tls_verify\":false,"
             "\"username\":\"reader\","
             "\"password\":\"s3cr3t\"}",
             tools, source);
    add(m, json);

    /* Refusals name what was wrong. */
    CHECK(regmirror_mirrors_add(m, json, NULL) == REGMIRROR_CONFLICT, "duplicate id");
    CHECK(regmirror_mirrors_add(m, "{\"id\":\"c/x\",\"source\":\"a.io/x\",\"tags\":\"*\","
                                   "\"intervall\":\"1h\"}",
                                NULL) == REGMIRROR_INVALID_CONFIG,
          "unknown setting");
    CHECK(strstr(regmirror_last_error_message(), "intervall"), "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirrors_add(m, "not json", NULL) == REGMIRROR_INVALID_CONFIG, "not JSON");
    char *out = NULL;
    CHECK(regmirror_mirrors_get(m, "c/none", &out) == REGMIRROR_NOT_FOUND && out == NULL,
          "missing mirror");
    CHECK(regmirror_mirrors_sync_now(m, NULL) == REGMIRROR_NULL_ARGUMENT, "NULL id");

    /* The plan, before anything ran. */
    CHECK(regmirror_mirrors_preview(m, app, NULL, &out) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(out && strstr(out, "{\"tag\":\"v1.0\",\"action\":\"copy\"") &&
              strstr(out, "{\"tag\":\"v1.1\",\"action\":\"copy\""),
          "[%s]", out);
    regmirror_string_free(out);

    /* Another process sees the same mirrors in the same store. */
    const char *listed = cli_list(state);
    CHECK(has_id(listed, app) && has_id(listed, tools), "[%s]", listed);
    CHECK(!strstr(listed, "s3cr3t"), "a password in [%s]", listed);

    /* A worker runs both while the notifier callback is blocked: it waits for nothing. */
    regmirror_worker_settings settings = {.poll_interval_ms = 200, .lease_ms = 3000,
                                          .shutdown_deadline_ms = 3000, .max_concurrent_syncs = 2};
    regmirror_worker *worker = NULL;
    CHECK(regmirror_worker_start(m, &settings, &worker) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(wait_status(m, app, "SUCCESS", 60), "%s did not succeed", app);
    CHECK(wait_status(m, tools, "SUCCESS", 60), "%s did not succeed", tools);
    out = get(m, app);
    CHECK(out && strstr(out, "\"last_report\":\"succeeded"), "[%s]", out);
    CHECK(out && strstr(out, "\"retries_remaining\":"), "[%s]", out);
    regmirror_string_free(out);
    release_events(true);
    CHECK(saw_event("sync_started", app, 10), "no sync_started for %s", app);
    CHECK(saw_event("sync_succeeded", app, 10), "no sync_succeeded for %s", app);
    CHECK(saw_event("sync_succeeded", tools, 10), "no sync_succeeded for %s", tools);
    pthread_mutex_lock(&events.lock);
    CHECK(strstr(events.log[0], "\"tags_synced\":") && strstr(events.log[0], "\"duration_ms\":"),
          "[%s]", events.log[0]);
    pthread_mutex_unlock(&events.lock);

    CHECK(regmirror_mirrors_logs(m, app, 10, 0, &out) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    snprintf(fragment, sizeof fragment, "\"mirror_id\":\"%s\"", app);
    CHECK(out && strstr(out, fragment) && strstr(out, "\"seq\":"), "[%s]", out);
    regmirror_string_free(out);

    /* A sync in this thread: everything is current now. */
    CHECK(regmirror_mirrors_sync(m, app, NULL, NULL, NULL, &out) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(out && strstr(out, "\"outcome\":\"success\"") &&
              strstr(out, "\"tags_current\":[\"v1.0\",\"v1.1\"]"),
          "[%s]", out);
    regmirror_string_free(out);

    /* A slow mirror (its source takes 3 s per blob), not due until "sync now"; then cancelled
     * while the worker runs it. */
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"source\":\"%s/library/slow\",\"tags\":\"%s\","
             "\"start\":\"2099-01-01T00:00:00Z\",\"tls_verify\":false}",
             slow, slow_source, slow_first);
    add(m, json);
    CHECK(regmirror_mirrors_sync_now(m, slow) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(wait_status(m, slow, "SYNCING", 30), "%s is not syncing", slow);
    CHECK(regmirror_mirrors_sync_now(m, slow) == REGMIRROR_CONFLICT, "sync now while syncing");
    double started = now();
    CHECK(regmirror_mirrors_cancel(m, slow) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(saw_event("sync_cancelled", slow, 30), "no sync_cancelled for %s", slow);
    CHECK(wait_status(m, slow, "CANCEL", 30), "%s is not cancelled", slow);
    fprintf(stderr, "   the worker's run stopped %.1fs after the cancel\n", now() - started);
    CHECK(regmirror_mirrors_cancel(m, slow) == REGMIRROR_CONFLICT, "cancel a cancelled one");
    CHECK(regmirror_worker_stop(worker) == REGMIRROR_OK, "%s", regmirror_last_error_message());

    /* The slow mirror's other tag (nothing of it copied yet) synced in this thread, cancelled
     * from another. */
    snprintf(json, sizeof json, "{\"tags\":\"%s\"}", slow_second);
    CHECK(regmirror_mirrors_update(m, slow, json, NULL) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    regmirror_cancel *cancel = NULL;
    CHECK(regmirror_cancel_new(&cancel) == REGMIRROR_OK, "cancel_new");
    struct canceller c = {cancel};
    pthread_t thread;
    pthread_create(&thread, NULL, cancel_soon, &c);
    started = now();
    CHECK(regmirror_mirrors_sync(m, slow, cancel, NULL, NULL, &out) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    pthread_join(thread, NULL);
    CHECK(out && strstr(out, "\"outcome\":\"cancelled\""), "[%s]", out);
    CHECK(now() - started < 30, "cancelled after %.1fs", now() - started);
    regmirror_string_free(out);
    regmirror_cancel_free(cancel);

    /* Update (what is not named stays), disable, enable. */
    CHECK(regmirror_mirrors_update(m, app, "{\"tags\":[\"v2.*\",\"latest\"]}", &out) ==
              REGMIRROR_OK,
          "%s", regmirror_last_error_message());
    CHECK(out && strstr(out, "\"tags\":[\"v2.*\",\"latest\"]") &&
              strstr(out, "\"sync_interval_secs\":3600"),
          "[%s]", out);
    regmirror_string_free(out);
    CHECK(regmirror_mirrors_update(m, app, "{\"tagz\":\"*\"}", NULL) == REGMIRROR_INVALID_CONFIG,
          "unknown setting");
    CHECK(strstr(regmirror_last_error_message(), "tagz"), "[%s]", regmirror_last_error_message());
    CHECK(regmirror_mirrors_update(m, app, "[1]", NULL) == REGMIRROR_INVALID_CONFIG, "not an object");
    CHECK(regmirror_mirrors_update(m, "c/none", "{}", NULL) == REGMIRROR_NOT_FOUND, "missing");
    CHECK(regmirror_mirrors_disable(m, app) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    out = get(m, app);
    CHECK(out && strstr(out, "\"enabled\":false"), "[%s]", out);
    regmirror_string_free(out);
    CHECK(regmirror_mirrors_enable(m, app) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());

    CHECK(regmirror_mirrors_list(m, &out) == REGMIRROR_OK, "%s", regmirror_last_error_message());
    CHECK(has_id(out, app) && has_id(out, tools) && has_id(out, slow), "[%s]", out);
    regmirror_string_free(out);

    const char *ids[] = {app, tools, slow};
    for (size_t i = 0; i < 3; i++) {
        CHECK(regmirror_mirrors_delete(m, ids[i]) == REGMIRROR_OK, "delete %s: %s", ids[i],
              regmirror_last_error_message());
    }
    CHECK(regmirror_mirrors_list(m, &out) == REGMIRROR_OK && out && strcmp(out, "[]") == 0,
          "[%s]", out);
    regmirror_string_free(out);
    listed = cli_list(state);
    CHECK(!has_id(listed, app), "[%s]", listed);
    regmirror_mirrors_free(m);
}

/* Handles without a destination manage mirrors only; bad URLs are refused up front. */
static void test_refusals(const char *dir) {
    regmirror_mirrors_builder *b = NULL;
    regmirror_mirrors *m = NULL;
    CHECK(regmirror_mirrors_builder_new("mysql://x", dest, &b) == REGMIRROR_INVALID_CONFIG,
          "unknown store");
    CHECK(b == NULL, "out written on failure");
    CHECK(regmirror_mirrors_builder_new("postgres://u:hunter2@", dest, &b) ==
              REGMIRROR_INVALID_CONFIG,
          "bad postgres URL");
    CHECK(!strstr(regmirror_last_error_message(), "hunter2"), "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirrors_builder_new("memory:", "registry.io/ns", &b) == REGMIRROR_INVALID_CONFIG,
          "destination with a path");
    CHECK(regmirror_mirrors_builder_new("memory:", NULL, &b) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirrors_builder_set_dest_tls_verify(b, false) == REGMIRROR_INVALID_CONFIG,
          "destination setting without a destination");
    CHECK(regmirror_mirrors_builder_open(b, &m) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    char json[512];
    snprintf(json, sizeof json, "{\"id\":\"c/app\",\"source\":\"%s/library/app\",\"tags\":\"*\"}",
             source);
    CHECK(regmirror_mirrors_add(m, json, NULL) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    char *out = NULL;
    CHECK(regmirror_mirrors_sync(m, "c/app", NULL, NULL, NULL, &out) == REGMIRROR_INVALID_CONFIG,
          "sync without a destination");
    CHECK(strstr(regmirror_last_error_message(), "destination"), "[%s]",
          regmirror_last_error_message());
    regmirror_worker *worker = NULL;
    CHECK(regmirror_worker_start(m, NULL, &worker) == REGMIRROR_INVALID_CONFIG && worker == NULL,
          "worker without a destination");
    regmirror_mirrors_free(m);
    CHECK(regmirror_worker_stop(NULL) == REGMIRROR_OK, "stop NULL");
    CHECK(regmirror_mirrors_builder_new(NULL, dest, &b) == REGMIRROR_NULL_ARGUMENT, "NULL state");
    CHECK(strstr(regmirror_last_error_message(), "state"), "[%s]", regmirror_last_error_message());
    CHECK(regmirror_mirrors_builder_new("memory:", dest, NULL) == REGMIRROR_NULL_ARGUMENT, "NULL out");
    CHECK(regmirror_mirrors_builder_open(NULL, &m) == REGMIRROR_NULL_ARGUMENT, "NULL builder");
    CHECK(regmirror_mirrors_list(NULL, &out) == REGMIRROR_NULL_ARGUMENT, "NULL mirrors");
    CHECK(regmirror_mirrors_add(NULL, "{}", NULL) == REGMIRROR_NULL_ARGUMENT, "NULL mirrors");
    CHECK(regmirror_mirrors_logs(NULL, "x", 1, 0, &out) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_worker_start(NULL, NULL, &worker) == REGMIRROR_NULL_ARGUMENT, "NULL");
    regmirror_mirrors_free(NULL);
    regmirror_mirrors_builder_free(NULL);

    char state[256];
    /* Under a regular file: no directory can be made there. */
    snprintf(state, sizeof state, "%s/file", dir);
    FILE *f = fopen(state, "w");
    if (f) {
        fclose(f);
    }
    snprintf(state, sizeof state, "sqlite:%s/file/state.db", dir);
    CHECK(regmirror_mirrors_builder_new(state, dest, &b) == REGMIRROR_OK, "new");
    regmirror_result rc = regmirror_mirrors_builder_open(b, &m);
    if (rc == REGMIRROR_OK) { /* a store may connect lazily: then its first use fails */
        rc = regmirror_mirrors_list(m, &out);
        regmirror_mirrors_free(m);
    }
    CHECK(rc != REGMIRROR_OK && strstr(regmirror_last_error_message(), "file/state.db"),
          "an unusable store: %s: %s", regmirror_result_name(rc), regmirror_last_error_message());
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    if (only && strcmp(only, "sqlite") != 0 && strcmp(only, "postgres") != 0) {
        fprintf(stderr, "usage: %s [sqlite|postgres]\n", argv[0]);
        return 2;
    }
    source = env("REGMIRROR_TEST_SOURCE");
    slow_source = env("REGMIRROR_TEST_SLOW_SOURCE");
    dest = env("REGMIRROR_TEST_DEST");
    cli = env("REGMIRROR_TEST_CLI");
    const char *postgres = env("REGMIRROR_TEST_POSTGRES");
    char dir[64] = "/tmp/regmirror-c-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char state[128];
    snprintf(state, sizeof state, "sqlite:%s/state.db", dir);
    test_refusals(dir);
    /* Repositories of their own in each run (the registries outlive it; run.sh runs this
     * test twice, linked dynamically and statically). */
    char sqlite_ns[32], postgres_ns[32];
    snprintf(sqlite_ns, sizeof sqlite_ns, "sqlite-%d", (int)getpid());
    snprintf(postgres_ns, sizeof postgres_ns, "postgres-%d", (int)getpid());
    if (!only || strcmp(only, "sqlite") == 0) {
        scenario(state, sqlite_ns, "v1", "v2");
    }
    if (!only || strcmp(only, "postgres") == 0) {
        scenario(postgres, postgres_ns, "v3", "v4");
    }
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
