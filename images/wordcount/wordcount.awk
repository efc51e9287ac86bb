# wordcount: {"text": "..."} on stdin -> {"words": W, "lines": L, "chars": C} on stdout.
#
# words: runs of characters other than ASCII whitespace (space, \t \n \v \f \r),
# lines: newline characters (as `wc -l`), chars: Unicode code points.
# busybox awk is byte-oriented: a raw UTF-8 character is counted once, at its
# lead byte; a \uXXXX escape (a surrogate pair included) is one character.
# The input was validated against input.schema.json before it got here, so
# "text" is the only member and a string.

BEGIN {
    for (code = 1; code < 256; code++) ord[sprintf("%c", code)] = code
}

{ doc = doc $0 "\n" }

END {
    at = index(doc, "\"text\"")
    if (!at) fail("no \"text\" member in the input")
    n = length(doc)
    i = at + 6
    while (i <= n && substr(doc, i, 1) ~ /[ \t\r\n:]/) i++
    if (substr(doc, i, 1) != "\"") fail("\"text\" is not a string")
    i++
    closed = 0
    while (i <= n) {
        c = substr(doc, i, 1)
        if (c == "\"") { closed = 1; break }
        if (c == "\\") {
            e = substr(doc, i + 1, 1)
            i += 2
            if (e == "n") cp = 10
            else if (e == "t") cp = 9
            else if (e == "r") cp = 13
            else if (e == "f") cp = 12
            else if (e == "b") cp = 8
            else if (e == "u") {
                cp = hex4(substr(doc, i, 4))
                i += 4
                # A high surrogate and its low half are one character.
                if (cp >= 55296 && cp <= 56319 && substr(doc, i, 2) == "\\u") {
                    low = hex4(substr(doc, i + 2, 4))
                    if (low >= 56320 && low <= 57343) i += 6
                }
            }
            else cp = 33  # \" \\ \/ stand for a visible character
            count(cp)
            continue
        }
        byte = ord[c]
        i++
        if (byte >= 128 && byte < 192) continue  # a UTF-8 continuation byte
        count(byte >= 128 ? 33 : byte)
    }
    if (!closed) fail("unterminated string")
    printf "{\"words\":%d,\"lines\":%d,\"chars\":%d}\n", words, lines, chars
}

function count(cp) {
    chars++
    if (cp == 32 || (cp >= 9 && cp <= 13)) {
        inword = 0
        if (cp == 10) lines++
    } else if (!inword) {
        inword = 1
        words++
    }
}

function hex4(s,    k, d, v) {
    s = tolower(s)
    v = 0
    for (k = 1; k <= 4; k++) {
        d = index("0123456789abcdef", substr(s, k, 1))
        if (!d) fail("bad \\u escape")
        v = v * 16 + d - 1
    }
    return v
}

function fail(message) {
    print "wordcount: " message > "/dev/stderr"
    exit 1
}
