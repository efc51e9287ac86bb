/* wordcount in C for WASI: {"text": "..."} on stdin -> {"words", "lines", "chars"} on stdout.
 * The same counts as the awk wordcount agent: words are runs of non-ASCII-whitespace,
 * lines are newline characters, chars are Unicode code points (a \uXXXX escape, and a
 * surrogate pair, count once). Built with Debian's clang: clang --target=wasm32-wasi -O2 -s */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long words, lines, chars;
static int in_word;

static void count(unsigned cp) {
    chars++;
    if (cp == ' ' || (cp >= 9 && cp <= 13)) {
        in_word = 0;
        if (cp == '\n') lines++;
    } else if (!in_word) {
        in_word = 1;
        words++;
    }
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *out = v;
    return 1;
}

static int fail(const char *why) {
    fprintf(stderr, "wordcount: %s\n", why);
    return 1;
}

int main(void) {
    size_t size = 0, cap = 1 << 16;
    char *doc = malloc(cap + 1);
    size_t n;
    while (doc && (n = fread(doc + size, 1, cap - size, stdin)) > 0) {
        size += n;
        if (size == cap) doc = realloc(doc, (cap *= 2) + 1);
    }
    if (!doc) return fail("out of memory");
    doc[size] = '\0';

    char *p = strstr(doc, "\"text\"");
    if (!p) return fail("no \"text\" member in the input");
    p += 6;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ':') p++;
    if (*p++ != '"') return fail("\"text\" is not a string");
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '\0') return fail("unterminated string");
        if (c == '"') break;
        if (c == '\\') {
            char e = p[1];
            unsigned cp = '!';  /* \" \\ \/ stand for a visible character */
            p += 2;
            if (e == 'n') cp = '\n';
            else if (e == 't') cp = '\t';
            else if (e == 'r') cp = '\r';
            else if (e == 'f') cp = '\f';
            else if (e == 'b') cp = '\b';
            else if (e == 'u') {
                if (!hex4(p, &cp)) return fail("bad \\u escape");
                p += 4;
                unsigned low;
                if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &low)
                    && low >= 0xDC00 && low <= 0xDFFF)
                    p += 6;  /* the pair is one character */
            }
            count(cp);
            continue;
        }
        p++;
        if (c >= 0x80 && c < 0xC0) continue;  /* a UTF-8 continuation byte */
        count(c >= 0x80 ? '!' : c);
    }
    printf("{\"words\":%ld,\"lines\":%ld,\"chars\":%ld}\n", words, lines, chars);
    return 0;
}
