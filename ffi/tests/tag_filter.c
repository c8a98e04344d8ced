/* Tests of the tag-filter C ABI: the Quay reference table (SEMANTICS.md §2), fnmatch edge
 * cases, invalid patterns, NULL arguments and invalid UTF-8. Prints "N passed, N failed". */
#include <stdio.h>
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

static const char *const QUAY_TAGS[] = {"v32", "v3.1", "v3.2", "v3.2-4beta", "v3.3"};
#define N_QUAY_TAGS (sizeof QUAY_TAGS / sizeof QUAY_TAGS[0])

/* Select `tags` with `patterns` and compare with `expected` (newline-separated, sorted). */
static void check_select(const char *patterns, const char *const *tags, size_t n,
                         const char *expected) {
    regmirror_tag_filter *filter = NULL;
    regmirror_result rc = regmirror_tag_filter_new(patterns, &filter);
    CHECK(rc == REGMIRROR_OK, "new(%s) = %s: %s", patterns, regmirror_result_name(rc),
          regmirror_last_error_message());
    if (rc != REGMIRROR_OK) {
        return;
    }
    char *selected = NULL;
    rc = regmirror_tag_filter_select(filter, tags, n, &selected);
    CHECK(rc == REGMIRROR_OK, "select with %s = %s", patterns, regmirror_result_name(rc));
    if (rc == REGMIRROR_OK) {
        CHECK(strcmp(selected, expected) == 0, "pattern %s selected [%s], expected [%s]",
              patterns, selected, expected);
    }
    regmirror_string_free(selected);
    regmirror_tag_filter_free(filter);
}

static bool matches(const char *patterns, const char *tag) {
    regmirror_tag_filter *filter = NULL;
    bool out = false;
    regmirror_result rc = regmirror_tag_filter_new(patterns, &filter);
    CHECK(rc == REGMIRROR_OK, "new(%s): %s", patterns, regmirror_last_error_message());
    rc = regmirror_tag_filter_matches(filter, tag, &out);
    CHECK(rc == REGMIRROR_OK, "matches(%s, %s) = %s", patterns, tag, regmirror_result_name(rc));
    regmirror_tag_filter_free(filter);
    return out;
}

static void test_quay_reference_table(void) {
    check_select("v3*", QUAY_TAGS, N_QUAY_TAGS, "v3.1\nv3.2\nv3.2-4beta\nv3.3\nv32");
    check_select("v3.*", QUAY_TAGS, N_QUAY_TAGS, "v3.1\nv3.2\nv3.2-4beta\nv3.3");
    check_select("v3.?", QUAY_TAGS, N_QUAY_TAGS, "v3.1\nv3.2\nv3.3");
    check_select("v3.[12]", QUAY_TAGS, N_QUAY_TAGS, "v3.1\nv3.2");
    check_select("v3.[12]*", QUAY_TAGS, N_QUAY_TAGS, "v3.1\nv3.2\nv3.2-4beta");
    check_select("v3.[!1]*", QUAY_TAGS, N_QUAY_TAGS, "v3.2\nv3.2-4beta\nv3.3");
}

static void test_edge_cases(void) {
    const char *caret[] = {"v1", "v^", "v2"};
    check_select("v[^1]", caret, 3, "v1\nv^");
    const char *star[] = {"v*", "vx", "v"};
    check_select("v[*]", star, 3, "v*");
    check_select("V3.*", QUAY_TAGS, N_QUAY_TAGS, "");
    check_select("v3", QUAY_TAGS, N_QUAY_TAGS, "");
    CHECK(!matches("v3", "v3.1"), "v3 must not match v3.1 (whole-tag anchoring)");
    CHECK(matches("v3", "v3"), "v3 must match v3");
    CHECK(!matches("v3.*", "V3.1"), "matching is case-sensitive");
    const char *dupes[] = {"latest", "v3.3", "v3.1", "latest"};
    check_select("v3.1, latest,v3.3", dupes, 4, "latest\nv3.1\nv3.3");
    check_select("v*, !*-rc*", (const char *const[]){"v1", "v2-rc1", "v2"}, 3, "v1\nv2");
    check_select("v*", NULL, 0, "");
}

static void test_invalid_patterns(void) {
    const char *bad[] = {"v3.[12", "", "regex:(", "semver:>>1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        regmirror_tag_filter *filter = (regmirror_tag_filter *)&passed; /* must stay untouched */
        regmirror_result rc = regmirror_tag_filter_new(bad[i], &filter);
        const char *message = regmirror_last_error_message();
        CHECK(rc == REGMIRROR_INVALID_PATTERN, "new(\"%s\") = %s", bad[i],
              regmirror_result_name(rc));
        CHECK(filter == (regmirror_tag_filter *)&passed, "out written on failure");
        CHECK(strstr(message, bad[i]) != NULL, "message [%s] names the pattern [%s]", message,
              bad[i]);
        CHECK(strstr(message, "InvalidPattern") != NULL, "message [%s] names the kind", message);
    }
    regmirror_tag_filter *filter = NULL;
    CHECK(regmirror_tag_filter_new(" , ", &filter) == REGMIRROR_INVALID_PATTERN, "empty list");
    CHECK(strstr(regmirror_last_error_message(), "empty") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_tag_filter_new("ok, v3.[12", &filter) == REGMIRROR_INVALID_PATTERN, "unclosed");
    CHECK(strstr(regmirror_last_error_message(), "position 3") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(filter == NULL, "out written on failure");
}

static void test_null_arguments(void) {
    regmirror_tag_filter *filter = NULL;
    bool out = false;
    char *selected = NULL;
    CHECK(regmirror_tag_filter_new(NULL, &filter) == REGMIRROR_NULL_ARGUMENT, "NULL patterns");
    CHECK(strstr(regmirror_last_error_message(), "patterns") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_tag_filter_new("v*", NULL) == REGMIRROR_NULL_ARGUMENT, "NULL out");
    CHECK(regmirror_tag_filter_matches(NULL, "v1", &out) == REGMIRROR_NULL_ARGUMENT,
          "NULL filter");
    CHECK(regmirror_tag_filter_new("v*", &filter) == REGMIRROR_OK, "new");
    CHECK(strcmp(regmirror_last_error_message(), "") == 0, "success clears the message");
    CHECK(regmirror_tag_filter_matches(filter, NULL, &out) == REGMIRROR_NULL_ARGUMENT, "NULL tag");
    CHECK(regmirror_tag_filter_matches(filter, "v1", NULL) == REGMIRROR_NULL_ARGUMENT, "NULL out");
    CHECK(regmirror_tag_filter_select(filter, NULL, 2, &selected) == REGMIRROR_NULL_ARGUMENT,
          "NULL tags with a length");
    const char *with_null[] = {"v1", NULL};
    CHECK(regmirror_tag_filter_select(NULL, with_null, 1, &selected) == REGMIRROR_NULL_ARGUMENT,
          "NULL filter (select)");
    CHECK(regmirror_tag_filter_select(filter, with_null, 2, &selected) == REGMIRROR_NULL_ARGUMENT,
          "NULL element");
    CHECK(strstr(regmirror_last_error_message(), "tags[1]") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(regmirror_tag_filter_select(filter, with_null, 1, NULL) == REGMIRROR_NULL_ARGUMENT,
          "NULL out");
    CHECK(selected == NULL, "out written on failure");
    regmirror_tag_filter_free(filter);
    regmirror_tag_filter_free(NULL);
    regmirror_string_free(NULL);
}

static void test_invalid_utf8(void) {
    regmirror_tag_filter *filter = NULL;
    bool out = true;
    char *selected = NULL;
    CHECK(regmirror_tag_filter_new("v\xff*", &filter) == REGMIRROR_INVALID_UTF8, "bad pattern");
    CHECK(strstr(regmirror_last_error_message(), "UTF-8") != NULL, "[%s]",
          regmirror_last_error_message());
    CHECK(filter == NULL, "out written on failure");
    CHECK(regmirror_tag_filter_new("v*", &filter) == REGMIRROR_OK, "new");
    CHECK(regmirror_tag_filter_matches(filter, "v\xc3", &out) == REGMIRROR_INVALID_UTF8, "bad tag");
    CHECK(out, "out written on failure");
    const char *tags[] = {"v1", "v\x80"};
    CHECK(regmirror_tag_filter_select(filter, tags, 2, &selected) == REGMIRROR_INVALID_UTF8,
          "bad tag in list");
    CHECK(selected == NULL, "out written on failure");
    regmirror_tag_filter_free(filter);
}

static void test_result_names(void) {
    CHECK(strcmp(regmirror_result_name(REGMIRROR_OK), "REGMIRROR_OK") == 0, "OK");
    CHECK(strcmp(regmirror_result_name(REGMIRROR_INVALID_PATTERN), "REGMIRROR_INVALID_PATTERN") == 0,
          "INVALID_PATTERN");
    CHECK(REGMIRROR_OK == 0, "OK is zero");
    CHECK(strcmp(regmirror_result_name(4242), "REGMIRROR_UNKNOWN") == 0, "unknown");
}

int main(void) {
    test_quay_reference_table();
    test_edge_cases();
    test_invalid_patterns();
    test_null_arguments();
    test_invalid_utf8();
    test_result_names();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
