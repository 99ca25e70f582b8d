/* Differential oracle for tests/it/ops/conninfo.rs: what libpq's PQconninfoParse
 * makes of each input (built there with cc and pkg-config's flags for libpq).
 * stdin: one hex-encoded connection string per line.
 * stdout per input: "E" on a refusal, else "O", then one "keyword hexvalue"
 * line per option that has a value, then ".".
 * With --keywords: every keyword this libpq knows, one per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

static int unhex(const char *in, char *out) {
    size_t n = strlen(in), i;
    if (n % 2) return -1;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(in + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (char) v;
    }
    out[n / 2] = '\0';
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--keywords") == 0) {
        PQconninfoOption *all = PQconndefaults(), *o;
        for (o = all; o && o->keyword; o++) printf("%s\n", o->keyword);
        PQconninfoFree(all);
        return 0;
    }
    static char line[1 << 20], text[1 << 19];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (unhex(line, text) != 0) { fprintf(stderr, "bad hex\n"); return 2; }
        char *error = NULL;
        PQconninfoOption *opts = PQconninfoParse(text, &error), *o;
        if (!opts) {
            printf("E\n");
            PQfreemem(error);
        } else {
            printf("O\n");
            for (o = opts; o->keyword; o++) {
                if (!o->val) continue;
                printf("%s ", o->keyword);
                for (const unsigned char *c = (const unsigned char *) o->val; *c; c++) printf("%02x", *c);
                printf("\n");
            }
            PQconninfoFree(opts);
        }
        printf(".\n");
    }
    return 0;
}
