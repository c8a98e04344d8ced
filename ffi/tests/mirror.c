/* Tests of the mirror C ABI: one-shot syncs between real OCI image layouts on disk (made by
 * scripts/make-test-layout.sh; run from the repository root), invalid settings, NULL
 * arguments. Prints "N passed, N failed". */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static char source[128], dest[128], index_path[160];

static regmirror_mirror *build(const char *from, const char *to, const char *tags, bool keep) {
    regmirror_mirror_builder *builder = NULL;
    regmirror_mirror *mirror = NULL;
    regmirror_result rc = regmirror_mirror_builder_new(from, to, tags, &builder);
    CHECK(rc == REGMIRROR_OK, "builder_new(%s): %s", tags, regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_keep_unselected(builder, keep) == REGMIRROR_OK, "keep");
    rc = regmirror_mirror_builder_build(builder, &mirror);
    CHECK(rc == REGMIRROR_OK, "build(%s): %s", tags, regmirror_last_error_message());
    return mirror;
}

/* Sync and return the JSON report (to free), or NULL. */
static char *sync_once(const char *tags, bool keep) {
    regmirror_mirror *mirror = build(source, dest, tags, keep);
    char *report = NULL;
    regmirror_result rc = regmirror_mirror_sync(mirror, &report);
    CHECK(rc == REGMIRROR_OK, "sync(%s) = %s: %s", tags, regmirror_result_name(rc),
          regmirror_last_error_message());
    regmirror_mirror_free(mirror);
    return report;
}

static char *read_file(const char *path) {
    static char buf[65536];
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_sync_copies_and_prunes(void) {
    char *report = sync_once("v1.*, !*-rc*", false);
    CHECK(report && strstr(report, "\"outcome\":\"success\""), "[%s]", report);
    CHECK(report && strstr(report, "\"tags_synced\":[\"v1.0\",\"v1.1\"]"), "[%s]", report);
    CHECK(report && strstr(report, "\"blobs_copied\":4"), "[%s]", report);
    CHECK(report && strstr(report, "\"error\":null"), "[%s]", report);
    regmirror_string_free(report);
    const char *index = read_file(index_path);
    CHECK(index && strstr(index, "\"v1.0\"") && strstr(index, "\"v1.1\""), "[%s]", index);
    CHECK(index && !strstr(index, "v2.0-rc1") && !strstr(index, "latest"), "[%s]", index);

    report = sync_once("v1.*, !*-rc*", false);
    CHECK(report && strstr(report, "\"tags_synced\":[]"), "[%s]", report);
    CHECK(report && strstr(report, "\"tags_current\":[\"v1.0\",\"v1.1\"]"), "[%s]", report);
    regmirror_string_free(report);

    report = sync_once("v1.0", false);
    CHECK(report && strstr(report, "\"tags_deleted\":[\"v1.1\"]"), "[%s]", report);
    regmirror_string_free(report);

    report = sync_once("latest", true);
    CHECK(report && strstr(report, "\"tags_deleted\":[]"), "[%s]", report);
    regmirror_string_free(report);
    index = read_file(index_path);
    CHECK(index && strstr(index, "\"v1.0\"") && strstr(index, "\"latest\""), "[%s]", index);

    /* Matching nothing is a success with a note: "error" stays null. */
    report = sync_once("nomatch*", true);
    CHECK(report && strstr(report, "\"outcome\":\"success\""), "[%s]", report);
    CHECK(report && strstr(report, "\"error\":null"), "[%s]", report);
    CHECK(report && strstr(report, "\"note\":\"no tags matched"), "[%s]", report);
    regmirror_string_free(report);
}

static void test_unlistable_source_is_reported(void) {
    char missing[160];
    snprintf(missing, sizeof missing, "oci:%s/missing", dir);
    regmirror_mirror *mirror = build(missing, dest, "v*", false);
    char *report = NULL;
    CHECK(regmirror_mirror_sync(mirror, &report) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"failed\""), "[%s]", report);
    regmirror_string_free(report);
    regmirror_mirror_free(mirror);
}

/* The SSRF guard, when on, refuses a loopback source: the run fails and says so. */
static void test_ssrf_guard_refuses_a_loopback_source(void) {
    regmirror_mirror_builder *builder = NULL;
    regmirror_mirror *mirror = NULL;
    CHECK(regmirror_mirror_builder_new("127.0.0.1:9/src/app", dest, "v1", &builder) ==
              REGMIRROR_OK,
          "new");
    CHECK(regmirror_mirror_builder_set_ssrf_guard(builder, true, "10.0.0.0/99") ==
              REGMIRROR_INVALID_CONFIG,
          "invalid allow-list entry");
    CHECK(strstr(regmirror_last_error_message(), "10.0.0.0/99") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_ssrf_guard(builder, false, "127.0.0.1") ==
              REGMIRROR_INVALID_CONFIG,
          "allow-list with the guard off");
    CHECK(regmirror_mirror_builder_set_ssrf_guard(builder, true, NULL) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_build(builder, &mirror) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    char *report = NULL;
    CHECK(regmirror_mirror_sync(mirror, &report) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(report && strstr(report, "\"outcome\":\"failed\""), "[%s]", report);
    CHECK(report && strstr(report, "SSRF guard refused 127.0.0.1: 127.0.0.1 is 127.0.0.1 (loopback)"),
          "[%s]", report);
    regmirror_string_free(report);
    regmirror_mirror_free(mirror);
}

static void test_invalid_settings(void) {
    regmirror_mirror_builder *builder = NULL;
    regmirror_mirror *mirror = NULL;
    CHECK(regmirror_mirror_builder_new("quay.io/app:v1", dest, "v*", &builder) ==
              REGMIRROR_INVALID_REFERENCE,
          "tagged source");
    CHECK(strstr(regmirror_last_error_message(), "quay.io/app:v1") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(builder == NULL, "out written on failure");

    CHECK(regmirror_mirror_builder_new(source, dest, "v3.[12", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_build(builder, &mirror) == REGMIRROR_INVALID_PATTERN,
          "invalid pattern");
    CHECK(strstr(regmirror_last_error_message(), "v3.[12") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(mirror == NULL, "out written on failure");

    CHECK(regmirror_mirror_builder_new(source, source, "v*", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_build(builder, &mirror) == REGMIRROR_INVALID_CONFIG,
          "same source and destination");

    CHECK(regmirror_mirror_builder_new(source, dest, "v*", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_set_source_credentials(builder, "", "s3cr3t") == REGMIRROR_OK,
          "credentials");
    CHECK(regmirror_mirror_builder_build(builder, &mirror) == REGMIRROR_INVALID_CONFIG,
          "empty username");
    CHECK(strstr(regmirror_last_error_message(), "s3cr3t") == NULL, "[%s] shows the password",
          regmirror_last_error_message());
}

/* Every pointer argument of every mirror function, NULL in turn: an error code naming it,
 * nothing written; the freeing functions accept NULL. */
static void test_null_arguments(void) {
    regmirror_mirror_builder *builder = NULL;
    regmirror_mirror *mirror = NULL;
    char *report = NULL;
    CHECK(regmirror_mirror_builder_new(NULL, dest, "v*", &builder) == REGMIRROR_NULL_ARGUMENT,
          "NULL source");
    CHECK(strstr(regmirror_last_error_message(), "source") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_new(source, NULL, "v*", &builder) == REGMIRROR_NULL_ARGUMENT,
          "NULL to");
    CHECK(regmirror_mirror_builder_new(source, dest, NULL, &builder) == REGMIRROR_NULL_ARGUMENT,
          "NULL tags");
    CHECK(strstr(regmirror_last_error_message(), "tags") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_new(source, dest, "v*", NULL) == REGMIRROR_NULL_ARGUMENT,
          "NULL out");
    CHECK(builder == NULL, "out written on failure");
    CHECK(regmirror_mirror_builder_new(source, dest, "v\xff", &builder) == REGMIRROR_INVALID_UTF8,
          "invalid UTF-8 tags");
    CHECK(builder == NULL, "out written on failure");
    CHECK(regmirror_mirror_builder_set_source_credentials(NULL, "robot", "pw") ==
              REGMIRROR_NULL_ARGUMENT,
          "NULL builder (source credentials)");
    CHECK(regmirror_mirror_builder_set_dest_credentials(NULL, "robot", "pw") ==
              REGMIRROR_NULL_ARGUMENT,
          "NULL builder (dest credentials)");
    CHECK(regmirror_mirror_builder_set_tls_verify(NULL, true, true) == REGMIRROR_NULL_ARGUMENT,
          "NULL builder (tls)");
    CHECK(regmirror_mirror_builder_set_keep_unselected(NULL, true) == REGMIRROR_NULL_ARGUMENT,
          "NULL builder (keep)");
    CHECK(regmirror_mirror_builder_set_ssrf_guard(NULL, true, NULL) == REGMIRROR_NULL_ARGUMENT,
          "NULL builder (ssrf guard)");
    CHECK(regmirror_mirror_builder_set_max_tags(NULL, 10) == REGMIRROR_NULL_ARGUMENT,
          "NULL builder (max tags)");
    CHECK(regmirror_mirror_builder_build(NULL, &mirror) == REGMIRROR_NULL_ARGUMENT, "NULL build");
    CHECK(regmirror_mirror_sync(NULL, &report) == REGMIRROR_NULL_ARGUMENT, "NULL mirror");

    CHECK(regmirror_mirror_builder_new(source, dest, "v*", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_set_source_credentials(builder, NULL, "pw") ==
              REGMIRROR_NULL_ARGUMENT,
          "NULL username");
    CHECK(strstr(regmirror_last_error_message(), "username") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_dest_credentials(builder, "robot", NULL) ==
              REGMIRROR_NULL_ARGUMENT,
          "NULL password");
    regmirror_mirror_builder_free(builder);

    CHECK(regmirror_mirror_builder_new(source, dest, "v*", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_set_max_tags(builder, 0) == REGMIRROR_OK, "max tags 0");
    CHECK(regmirror_mirror_builder_build(builder, &mirror) == REGMIRROR_INVALID_CONFIG,
          "max tags 0 builds");
    CHECK(strstr(regmirror_last_error_message(), "max_tags") != NULL, "[%s]",
          regmirror_last_error_message());

    /* _build consumes the builder even when `out` is NULL (valgrind: no leak). */
    CHECK(regmirror_mirror_builder_new(source, dest, "v*", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_build(builder, NULL) == REGMIRROR_NULL_ARGUMENT,
          "NULL build out");
    mirror = build(source, dest, "v*", false);
    CHECK(regmirror_mirror_sync(mirror, NULL) == REGMIRROR_NULL_ARGUMENT, "NULL report out");
    CHECK(strstr(regmirror_last_error_message(), "out") != NULL, "[%s]",
          regmirror_last_error_message());
    regmirror_mirror_free(mirror);

    regmirror_mirror_builder_free(NULL);
    regmirror_mirror_free(NULL);
    regmirror_string_free(NULL);
    CHECK(strcmp(regmirror_result_name(REGMIRROR_NULL_ARGUMENT), "REGMIRROR_NULL_ARGUMENT") == 0,
          "name");
    CHECK(strcmp(regmirror_result_name(99), "REGMIRROR_UNKNOWN") == 0, "unknown code");
}

/* The referrers setting: a bad value names itself; the report counts referrers copied. */
static void test_referrers_setting(void) {
    regmirror_mirror_builder *builder = NULL;
    regmirror_mirror *mirror = NULL;
    CHECK(regmirror_mirror_builder_new(source, dest, "v1", &builder) == REGMIRROR_OK, "new");
    CHECK(regmirror_mirror_builder_set_referrers(builder, "some") == REGMIRROR_INVALID_CONFIG,
          "invalid referrers");
    CHECK(strstr(regmirror_last_error_message(), "\"some\"") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_set_referrers(builder, "none") == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(regmirror_mirror_builder_build(builder, &mirror) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    char *report = NULL;
    CHECK(regmirror_mirror_sync(mirror, &report) == REGMIRROR_OK, "%s",
          regmirror_last_error_message());
    CHECK(report && strstr(report, "\"referrers_copied\":0"), "[%s]", report);
    regmirror_string_free(report);
    regmirror_mirror_free(mirror);
    CHECK(regmirror_mirror_builder_set_referrers(NULL, "all") == REGMIRROR_NULL_ARGUMENT,
          "NULL builder (referrers)");
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(source, sizeof source, "oci:%s/source", dir);
    snprintf(dest, sizeof dest, "oci:%s/dest", dir);
    snprintf(index_path, sizeof index_path, "%s/dest/index.json", dir);
    char command[256];
    snprintf(command, sizeof command,
             "bash scripts/make-test-layout.sh %s/source v1.0 v1.1 v2.0-rc1 latest", dir);
    if (system(command) != 0) {
        fprintf(stderr, "%s failed (run from the repository root)\n", command);
        return 2;
    }
    test_sync_copies_and_prunes();
    test_unlistable_source_is_reported();
    test_ssrf_guard_refuses_a_loopback_source();
    test_invalid_settings();
    test_referrers_setting();
    test_null_arguments();
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
