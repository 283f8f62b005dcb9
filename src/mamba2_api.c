/**
 * @file mamba2_api.c
 * @brief The public API's version, status strings, error filling and model references.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mamba2_impl.h"

/* Two levels, so that the macros are expanded before they are turned into a string. */
#define STR_(x) #x
#define STR(x) STR_(x)

MAMBA2_API const char *mamba2_version(void) {
    return STR(MAMBA2_VERSION_MAJOR) "." STR(MAMBA2_VERSION_MINOR) "." STR(MAMBA2_VERSION_PATCH);
}

MAMBA2_API const char *mamba2_status_string(int code) {
    switch (code) {
    case MAMBA2_OK: return "success";
    case MAMBA2_ERR_ARGUMENT: return "invalid argument";
    case MAMBA2_ERR_TOKEN: return "token id out of range";
    case MAMBA2_ERR_IO: return "cannot open, read or write a file";
    case MAMBA2_ERR_FORMAT: return "malformed file";
    case MAMBA2_ERR_BACKEND: return "backend unavailable or failed";
    case MAMBA2_ERR_MEMORY: return "out of memory";
    default: return NULL;
    }
}

int api_ok(mamba2_error *err) {
    if (err) {
        err->code = MAMBA2_OK;
        err->message[0] = 0;
    }
    return MAMBA2_OK;
}

int api_fail(mamba2_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int api_fail_internal(mamba2_error *err, int code, const Mamba2Error *internal) {
    if (strstr(internal->msg, "out of memory")) code = MAMBA2_ERR_MEMORY;
    return api_fail(err, code, "%s", internal->msg[0] ? internal->msg : mamba2_status_string(code));
}
