/* Tests of a one-shot sync's options from C: the settings the CLI's `regmirror sync` has, a
 * preview, a progress callback (a slow one does not slow the sync), a cancel handle triggered
 * from another thread, and the timeout against a registry that accepts connections and never
 * answers (a silent TCP listener). Sources are OCI layouts made by scripts/make-test-layout.sh
 * (run from the repository root). Prints "N passed, N failed". */
#define _DEFAULT_SOURCE /* mkdtemp, usleep */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static char dir[64] = "/tmp/regmirror-c-XXXXXX";
static char source[128];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A TCP listener on loopback that never accepts: the kernel completes the handshake, nothing
 * ever answers. Returns the port; *fd is the socket to close. */
static int silent_listener(int *fd) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(*fd, 16) != 0 ||
        getsockname(*fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("silent listener");
        exit(2);
    }
    return ntohs(addr.sin_port);
}

static regmirror_mirror_builder *builder_for(const char *from, const char *to, const char *tags) {
    regmirror_mirror_builder *builder = NULL;
    regmirror_result rc = regmirror_mirror_builder_new(from, to, tags, &builder);
    CHECK(rc == REGMIRROR_OK, "builder_new(%s): %s", from, regmirror_last_error_message());
    return builder;
}

static regmirror_mirror *build(regmirror_mirror_builder *builder) {
    regmirror_mirror *mirror = NULL;
    regmirror_result rc = regmirror_mirror_builder_build(builder, &mirror);
    CHECK(rc == REGMIRROR_OK, "build: %s", regmirror_last_error_message());
    return mirror;
}

static void dest_dir(char *out, size_t size, const char *name) {
    snprintf(out, size, "oci:%s/%s", dir, name);
}

/* Every setting the CLI's one-shot sync has, set; a sync of the layout then succeeds. */
static void test_settings_accepted(void) {
    char dest[160];
    dest_dir(dest, sizeof dest, "settings");
    regmirror_mirror_builder *b = builder_for(source, dest, "v1.*");
    CHECK(regmirror_mirror_builder_set_architectures(b, "amd64, arm64") == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_rollback(b, "all_or_nothing") == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_platform_index(b, "rewrite") == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_concurrency(b, 3) == REGMIRROR_OK, "concurrency");
    CHECK(regmirror_mirror_builder_set_timeout_ms(b, 60000) == REGMIRROR_OK, "timeout");
    CHECK(regmirror_mirror_builder_set_docker_config(b, false, false) == REGMIRROR_OK, "docker");
    CHECK(regmirror_mirror_builder_set_source_auth_file(b, NULL) == REGMIRROR_OK, "auth file");
    CHECK(regmirror_mirror_builder_set_dest_auth_file(b, NULL) == REGMIRROR_OK, "auth file");
    CHECK(regmirror_mirror_builder_set_source_proxy(b, NULL, NULL, NULL) == REGMIRROR_OK, "proxy");
    CHECK(regmirror_mirror_builder_set_dest_proxy(b, NULL, NULL, "localhost") == REGMIRROR_OK,
          "proxy");
    regmirror_mirror *mirror = build(b);
    char *report = NULL;
    CHECK(regmirror_mirror_sync(mirror, &report) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"success\""), "[%s]", report);
    CHECK(report && strstr(report, "\"tags_synced\":[\"v1.0\",\"v1.1\"]"), "[%s]", report);
    /* The CLI's --json names. */
    CHECK(report && strstr(report, "\"tags_failed\":[]") && strstr(report, "\"duration_ms\":"),
          "[%s]", report);
    regmirror_string_free(report);
    regmirror_mirror_free(mirror);
}

/* Each invalid setting is refused with the code and a message naming what was wrong. */
static void test_settings_refused(void) {
    char dest[160];
    dest_dir(dest, sizeof dest, "refused");
    regmirror_mirror *mirror = NULL;
    regmirror_mirror_builder *b = builder_for(source, dest, "v1.*");
    CHECK(regmirror_mirror_builder_set_rollback(b, "sometimes") == REGMIRROR_INVALID_CONFIG,
          "rollback");
    CHECK(strstr(regmirror_last_error_message(), "\"sometimes\""), "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_platform_index(b, "dense") == REGMIRROR_INVALID_CONFIG,
          "platform_index");
    CHECK(strstr(regmirror_last_error_message(), "\"dense\""), "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_rollback(b, NULL) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_mirror_builder_set_architectures(b, "amd64,pdp11") == REGMIRROR_OK, "arch");
    CHECK(regmirror_mirror_builder_build(b, &mirror) == REGMIRROR_INVALID_CONFIG, "arch builds");
    CHECK(strstr(regmirror_last_error_message(), "pdp11"), "[%s]", regmirror_last_error_message());

    b = builder_for(source, dest, "v1.*");
    CHECK(regmirror_mirror_builder_set_concurrency(b, 0) == REGMIRROR_OK, "concurrency 0");
    CHECK(regmirror_mirror_builder_build(b, &mirror) == REGMIRROR_INVALID_CONFIG, "builds");
    CHECK(strstr(regmirror_last_error_message(), "concurrency"), "[%s]",
          regmirror_last_error_message());

    b = builder_for(source, dest, "v1.*");
    CHECK(regmirror_mirror_builder_set_timeout_ms(b, 0) == REGMIRROR_OK, "timeout 0");
    CHECK(regmirror_mirror_builder_build(b, &mirror) == REGMIRROR_INVALID_CONFIG, "builds");
    CHECK(strstr(regmirror_last_error_message(), "timeout"), "[%s]",
          regmirror_last_error_message());
    CHECK(mirror == NULL, "out written on failure");

    /* A CA path or auth file that does not exist stops the sync before it starts. */
    b = builder_for("127.0.0.1:9/src/app", dest, "v1.*");
    CHECK(regmirror_mirror_builder_add_source_ca_certs(b, "/nonexistent/ca.pem") == REGMIRROR_OK,
          "ca");
    mirror = build(b);
    char *report = NULL;
    regmirror_result rc = regmirror_mirror_sync(mirror, &report);
    CHECK(rc != REGMIRROR_OK && report == NULL, "%s", regmirror_result_name(rc));
    CHECK(strstr(regmirror_last_error_message(), "/nonexistent/ca.pem"), "[%s]",
          regmirror_last_error_message());
    regmirror_mirror_free(mirror);

    b = builder_for("127.0.0.1:9/src/app", dest, "v1.*");
    CHECK(regmirror_mirror_builder_set_source_auth_file(b, "/nonexistent/auth.json") ==
              REGMIRROR_OK,
          "auth file");
    mirror = build(b);
    rc = regmirror_mirror_sync(mirror, &report);
    CHECK(rc != REGMIRROR_OK && report == NULL, "%s", regmirror_result_name(rc));
    CHECK(strstr(regmirror_last_error_message(), "/nonexistent/auth.json"), "[%s]",
          regmirror_last_error_message());
    regmirror_mirror_free(mirror);

    b = builder_for("127.0.0.1:9/src/app", dest, "v1.*");
    CHECK(regmirror_mirror_builder_set_source_proxy(b, "not a url", NULL, NULL) == REGMIRROR_OK,
          "proxy");
    mirror = build(b);
    rc = regmirror_mirror_sync(mirror, &report);
    CHECK(rc == REGMIRROR_INVALID_CONFIG && report == NULL, "%s", regmirror_result_name(rc));
    CHECK(strstr(regmirror_last_error_message(), "http_proxy"), "[%s]",
          regmirror_last_error_message());
    regmirror_mirror_free(mirror);

    CHECK(regmirror_mirror_builder_set_concurrency(NULL, 1) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_mirror_builder_set_timeout_ms(NULL, 1) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_mirror_builder_add_dest_ca_certs(NULL, "x") == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_mirror_sync_with(NULL, NULL, NULL, NULL, &report) == REGMIRROR_NULL_ARGUMENT,
          "NULL mirror");
    CHECK(regmirror_mirror_preview(NULL, NULL, &report) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_cancel_new(NULL) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(regmirror_cancel_cancel(NULL) == REGMIRROR_NULL_ARGUMENT, "NULL");
    CHECK(!regmirror_cancel_is_cancelled(NULL), "NULL is not cancelled");
    regmirror_cancel_free(NULL);
}

/* The plan: every selected tag to copy, nothing written. */
static void test_preview(void) {
    char dest[160], index[200];
    dest_dir(dest, sizeof dest, "preview");
    regmirror_mirror *mirror = build(builder_for(source, dest, "v1.*"));
    char *plan = NULL;
    CHECK(regmirror_mirror_preview(mirror, NULL, &plan) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(plan && strstr(plan, "{\"tag\":\"v1.0\",\"action\":\"copy\""), "[%s]", plan);
    CHECK(plan && strstr(plan, "{\"tag\":\"v1.1\",\"action\":\"copy\""), "[%s]", plan);
    CHECK(plan && strstr(plan, "\"bytes_to_copy\":") && strstr(plan, "\"tags_to_delete\":[]"),
          "[%s]", plan);
    CHECK(plan && strstr(plan, "\"source\":\"oci:"), "[%s]", plan);
    regmirror_string_free(plan);
    snprintf(index, sizeof index, "%s/preview/index.json", dir);
    CHECK(access(index, F_OK) != 0, "a preview wrote %s", index);
    regmirror_mirror_free(mirror);
}

/* A tag whose layer is missing from the source fails alone; the report says its error kind
 * (the CLI's --json fields), and the run's. */
static void test_failed_tag_has_its_kind(void) {
    char broken[160], dest[160], command[512];
    snprintf(broken, sizeof broken, "%s/broken", dir);
    snprintf(command, sizeof command,
             "bash scripts/make-test-layout.sh %s v1 v2 && "
             "rm %s/blobs/sha256/$(printf 'layer of v2\\n' | sha256sum | cut -d' ' -f1)",
             broken, broken);
    CHECK(system(command) == 0, "%s", command);
    snprintf(broken, sizeof broken, "oci:%s/broken", dir);
    dest_dir(dest, sizeof dest, "broken-copy");
    regmirror_mirror *mirror = build(builder_for(broken, dest, "*"));
    char *report = NULL;
    CHECK(regmirror_mirror_sync(mirror, &report) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"failed\""), "[%s]", report);
    CHECK(report && strstr(report, "\"tags_synced\":[\"v1\"]"), "[%s]", report);
    CHECK(report && strstr(report, "\"tags_failed\":[{\"tag\":\"v2\",\"reason\":"), "[%s]",
          report);
    CHECK(report && strstr(report, "\"kind\":\"NotFound\""), "[%s]", report);
    CHECK(report && strstr(report, "\"failure\":{\"kind\":"), "[%s]", report);
    regmirror_string_free(report);
    regmirror_mirror_free(mirror);
}

struct events {
    atomic_int count;
    atomic_int tag_finished;
    useconds_t delay;
    pthread_t caller;
    atomic_int on_caller_thread;
};

static void on_progress(void *userdata, const char *json) {
    struct events *events = userdata;
    atomic_fetch_add(&events->count, 1);
    if (strstr(json, "\"type\":\"tag_finished\"")) {
        atomic_fetch_add(&events->tag_finished, 1);
    }
    if (pthread_equal(pthread_self(), events->caller)) {
        atomic_fetch_add(&events->on_caller_thread, 1);
    }
    if (events->delay) {
        usleep(events->delay);
    }
}

/* Progress arrives on another thread; a callback taking half a second per event does not
 * hold the sync up, and is not called after the sync returned. */
static void test_progress(void) {
    char dest[160];
    dest_dir(dest, sizeof dest, "progress");
    regmirror_mirror *mirror = build(builder_for(source, dest, "*"));
    struct events fast = {.caller = pthread_self()};
    char *report = NULL;
    CHECK(regmirror_mirror_sync_with(mirror, NULL, on_progress, &fast, &report) == REGMIRROR_OK,
          "%s", regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"success\""), "[%s]", report);
    regmirror_string_free(report);
    CHECK(atomic_load(&fast.tag_finished) == 4, "%d tag_finished events",
          atomic_load(&fast.tag_finished));
    CHECK(atomic_load(&fast.on_caller_thread) == 0, "called on the caller's thread");
    regmirror_mirror_free(mirror);

    dest_dir(dest, sizeof dest, "progress-slow");
    mirror = build(builder_for(source, dest, "*"));
    struct events slow = {.caller = pthread_self(), .delay = 500000};
    double started = now();
    CHECK(regmirror_mirror_sync_with(mirror, NULL, on_progress, &slow, &report) == REGMIRROR_OK,
          "%s", regmirror_last_error_message());
    double took = now() - started;
    int seen = atomic_load(&slow.count);
    CHECK(report && strstr(report, "\"tags_synced\":[\"latest\",\"v1.0\",\"v1.1\",\"v2.0-rc1\"]"),
          "[%s]", report);
    regmirror_string_free(report);
    /* The fast run had this many events; delivering them all would take count/2 seconds. */
    int all = atomic_load(&fast.count);
    CHECK(all >= 10, "%d events", all);
    CHECK(took < 3.0 && seen < all, "the sync took %.1fs with a slow callback (%d of %d events)",
          took, seen, all);
    usleep(700000);
    CHECK(atomic_load(&slow.count) == seen, "called after the sync returned");
    regmirror_mirror_free(mirror);
}

struct canceller {
    regmirror_cancel *cancel;
    useconds_t after;
};

static void *cancel_later(void *arg) {
    struct canceller *c = arg;
    usleep(c->after);
    CHECK(regmirror_cancel_cancel(c->cancel) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    return NULL;
}

/* A sync stuck on a registry that never answers: a cancel from another thread ends it soon,
 * as "cancelled"; a short timeout ends another as "failed" with a timeout error. */
static void test_cancel_and_timeout(void) {
    int fd;
    int port = silent_listener(&fd);
    char from[64], dest[160];
    snprintf(from, sizeof from, "127.0.0.1:%d/src/app", port);
    dest_dir(dest, sizeof dest, "silent");

    regmirror_mirror_builder *b = builder_for(from, dest, "*");
    CHECK(regmirror_mirror_builder_set_tls_verify(b, false, true) == REGMIRROR_OK, "tls");
    regmirror_mirror *mirror = build(b);
    regmirror_cancel *cancel = NULL;
    CHECK(regmirror_cancel_new(&cancel) == REGMIRROR_OK, "cancel_new");
    CHECK(!regmirror_cancel_is_cancelled(cancel), "fresh handle is cancelled");
    struct canceller c = {.cancel = cancel, .after = 500000};
    pthread_t thread;
    pthread_create(&thread, NULL, cancel_later, &c);
    char *report = NULL;
    double started = now();
    regmirror_result rc = regmirror_mirror_sync_with(mirror, cancel, NULL, NULL, &report);
    double took = now() - started;
    pthread_join(thread, NULL);
    CHECK(rc == REGMIRROR_OK, "%s: %s", regmirror_result_name(rc), regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"cancelled\""), "[%s]", report);
    CHECK(took < 10.0, "cancelled after %.1fs", took);
    CHECK(regmirror_cancel_is_cancelled(cancel), "not cancelled");
    regmirror_string_free(report);

    /* A preview with the cancelled handle stops at once. */
    char *plan = NULL;
    rc = regmirror_mirror_preview(mirror, cancel, &plan);
    CHECK(rc == REGMIRROR_CANCELLED && plan == NULL, "%s", regmirror_result_name(rc));
    regmirror_cancel_free(cancel);
    regmirror_mirror_free(mirror);

    b = builder_for(from, dest, "*");
    CHECK(regmirror_mirror_builder_set_tls_verify(b, false, true) == REGMIRROR_OK, "tls");
    CHECK(regmirror_mirror_builder_set_timeout_ms(b, 1500) == REGMIRROR_OK, "timeout");
    mirror = build(b);
    started = now();
    rc = regmirror_mirror_sync(mirror, &report);
    took = now() - started;
    CHECK(rc == REGMIRROR_OK, "%s: %s", regmirror_result_name(rc), regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"failed\""), "[%s]", report);
    CHECK(report && strstr(report, "took longer than its timeout of 1s 500ms"), "[%s]", report);
    CHECK(report && strstr(report, "\"failure\":{\"kind\":\"Timeout\""), "[%s]", report);
    CHECK(took >= 1.4 && took < 10.0, "timed out after %.1fs", took);
    regmirror_string_free(report);

    started = now();
    rc = regmirror_mirror_preview(mirror, NULL, &plan);
    took = now() - started;
    CHECK(rc == REGMIRROR_TIMEOUT && plan == NULL, "%s", regmirror_result_name(rc));
    CHECK(took < 10.0, "preview timed out after %.1fs", took);
    regmirror_mirror_free(mirror);
    close(fd);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(source, sizeof source, "oci:%s/source", dir);
    char command[256];
    snprintf(command, sizeof command,
             "bash scripts/make-test-layout.sh %s/source v1.0 v1.1 v2.0-rc1 latest", dir);
    if (system(command) != 0) {
        fprintf(stderr, "%s failed (run from the repository root)\n", command);
        return 2;
    }
    test_settings_accepted();
    test_settings_refused();
    test_preview();
    test_failed_tag_has_its_kind();
    test_progress();
    test_cancel_and_timeout();
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
