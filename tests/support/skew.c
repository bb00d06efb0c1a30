/* A clock that is off: LD_PRELOAD it with PITSTOP_TEST_CLOCK_SKEW_S=<seconds> and the process
   sees the wall clock (CLOCK_REALTIME, gettimeofday, time) shifted by that much. Tests use it to
   show that rate-limit decisions follow Redis's clock, not the instance's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static long skew(void) {
  const char* s = getenv("PITSTOP_TEST_CLOCK_SKEW_S");
  return s ? atol(s) : 0;
}

/* ISO C has no conversion from dlsym's object pointer to a function pointer; POSIX guarantees the
   representations match, so the bytes are copied. */
static void next_symbol(const char* name, void* fn, size_t size) {
  void* p = dlsym(RTLD_NEXT, name);
  memcpy(fn, &p, size);
}

int clock_gettime(clockid_t id, struct timespec* ts) {
  static int (*real)(clockid_t, struct timespec*) = 0;
  if (!real) next_symbol("clock_gettime", &real, sizeof real);
  int r = real(id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += skew();
  return r;
}

int gettimeofday(struct timeval* tv, void* tz) {
  static int (*real)(struct timeval*, void*) = 0;
  if (!real) next_symbol("gettimeofday", &real, sizeof real);
  int r = real(tv, tz);
  /* No null check: glibc declares tv nonnull, so the compiler would drop one anyway. */
  if (r == 0) tv->tv_sec += skew();
  return r;
}

time_t time(time_t* out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}
