/* The version macros of the header and the version of the library loaded agree (both are the
 * workspace version), and regmirror_version() is a plain static string. */
#include <regmirror.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", REGMIRROR_VERSION_MAJOR,
             REGMIRROR_VERSION_MINOR, REGMIRROR_VERSION_PATCH);
    const char *loaded = regmirror_version();
    if (loaded == NULL || strcmp(loaded, expected) != 0) {
        fprintf(stderr, "FAIL: header %s, library %s\n", expected, loaded ? loaded : "(null)");
        return 1;
    }
    printf("ok: header and library are regmirror %s\n", loaded);
    return 0;
}
