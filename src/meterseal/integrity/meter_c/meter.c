/*
 * meter.c: the smart-meter application that meterseal's integrity monitor protects.
 *
 * It does what a meter does, one interval at a time: read the sensor source (one power value
 * in watts per line, wrapping at the end), accumulate energy, write the display register and
 * send the reading to the head-end over UDP. Every `persist_every` intervals, and at the end,
 * it rewrites the energy register (the total a restart resumes from).
 *
 *   meter SENSOR_FILE REGISTER_DIR HEADEND_HOST:PORT INTERVAL_MS COUNT [PERSIST_EVERY]
 *
 * Files are opened once and written with pwrite, so the steady state makes no sensitive system
 * call except the periodic energy-register write: the monitor's seccomp filter lets the rest run
 * at full speed. Build variants with -D flags add a dormant attack that a sensor value of
 * TRIGGER_WATTS wakes up (the offline trace never sees it):
 *   -DMETER_VARIANT_OPEN     open a file it never opened (plant a firmware image)
 *   -DMETER_VARIANT_SHELL    spawn a shell
 *   -DMETER_VARIANT_ENERGY   write the energy register out of turn (roll the total back)
 *   -DMETER_VARIANT_CONNECT  connect to another host
 *   -DMETER_VARIANT_EXECMEM  make memory executable (stage shellcode)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TRIGGER_WATTS 31337L
#define NOINLINE __attribute__((noinline))

static int sensor_fd = -1, display_fd = -1, uplink_fd = -1;
static char sensor_buf[4096];
static size_t sensor_len, sensor_pos;
static uint64_t energy_mwh; /* milliwatt-hours: integer arithmetic only */
static char register_dir[3072];

static void die(const char *what) {
    fprintf(stderr, "meter: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void register_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", register_dir, name);
}

NOINLINE static void open_sensor(const char *path) {
    sensor_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (sensor_fd < 0) die("open sensor");
}

NOINLINE static void open_display(void) {
    char path[4096];
    register_path(path, sizeof path, "display.reg");
    display_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (display_fd < 0) die("open display register");
}

NOINLINE static void load_energy(void) {
    char path[4096], text[32] = {0};
    register_path(path, sizeof path, "energy.reg");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return; /* a new meter starts at zero */
    if (read(fd, text, sizeof text - 1) > 0) energy_mwh = strtoull(text, NULL, 10);
    close(fd);
}

NOINLINE static void connect_headend(const char *target) {
    char host[64];
    const char *colon = strrchr(target, ':');
    if (colon == NULL || (size_t)(colon - target) >= sizeof host) {
        fprintf(stderr, "meter: head-end must be HOST:PORT\n");
        exit(2);
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("head-end address");
    uplink_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (uplink_fd < 0) die("socket");
    if (connect(uplink_fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
}

/* The next line of the sensor source as watts; wraps to the start at the end of the file. */
NOINLINE static long read_sensor(void) {
    char line[32];
    size_t n = 0;
    for (int wrapped = 0;;) {
        if (sensor_pos == sensor_len) {
            ssize_t got = read(sensor_fd, sensor_buf, sizeof sensor_buf);
            if (got < 0) die("read sensor");
            if (got == 0) {
                if (wrapped++) return 0; /* an empty source reads as no load */
                if (lseek(sensor_fd, 0, SEEK_SET) < 0) die("rewind sensor");
                continue;
            }
            sensor_len = (size_t)got;
            sensor_pos = 0;
        }
        char c = sensor_buf[sensor_pos++];
        if (c == '\n') {
            if (n == 0) continue;
            break;
        }
        if (n < sizeof line - 1) line[n++] = c;
    }
    line[n] = '\0';
    return strtol(line, NULL, 10);
}

NOINLINE static void accumulate(long watts, long interval_ms) {
    if (watts > 0) energy_mwh += (uint64_t)watts * (uint64_t)interval_ms / 3600u;
}

NOINLINE static void write_display(unsigned counter) {
    char text[64];
    int n = snprintf(text, sizeof text, "%010" PRIu64 " mWh #%08u\n", energy_mwh, counter);
    if (pwrite(display_fd, text, (size_t)n, 0) != n) die("write display register");
}

NOINLINE static void send_reading(unsigned counter, long watts) {
    char text[96];
    int n = snprintf(text, sizeof text, "%u %ld %" PRIu64, counter, watts, energy_mwh);
    (void)send(uplink_fd, text, (size_t)n, 0); /* UDP: a lost reading is resent by counter */
}

static void write_energy_file(uint64_t value) {
    char path[4096], text[32];
    register_path(path, sizeof path, "energy.reg");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("open energy register");
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", value);
    if (write(fd, text, (size_t)n) != n) die("write energy register");
    close(fd);
}

NOINLINE static void persist_energy(void) { write_energy_file(energy_mwh); }

#ifdef METER_VARIANT_OPEN
NOINLINE static void plant_firmware(void) {
    char path[4096];
    register_path(path, sizeof path, "firmware.bin");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (fd >= 0) close(fd);
}
#endif
#ifdef METER_VARIANT_SHELL
NOINLINE static void maintenance_shell(void) { (void)system("echo pwned >/dev/null"); }
#endif
#ifdef METER_VARIANT_ENERGY
NOINLINE static void rollback_energy(void) { write_energy_file(energy_mwh / 2); }
#endif
#ifdef METER_VARIANT_CONNECT
NOINLINE static void beacon(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(4444)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) (void)send(fd, "hi", 2, 0);
}
#endif
#ifdef METER_VARIANT_EXECMEM
NOINLINE static void stage_shellcode(void) {
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return;
    memset(page, 0xc3, 4096); /* ret */
    if (mprotect(page, 4096, PROT_READ | PROT_EXEC) == 0) ((void (*)(void))page)();
}
#endif

/* The dormant attack of this build, if any; woken by the trigger value. */
NOINLINE static void on_trigger(void) {
#ifdef METER_VARIANT_OPEN
    plant_firmware();
#endif
#ifdef METER_VARIANT_SHELL
    maintenance_shell();
#endif
#ifdef METER_VARIANT_ENERGY
    rollback_energy();
#endif
#ifdef METER_VARIANT_CONNECT
    beacon();
#endif
#ifdef METER_VARIANT_EXECMEM
    stage_shellcode();
#endif
}

static void pause_interval(long interval_ms) {
    if (interval_ms <= 0) return;
    struct timespec ts = {.tv_sec = interval_ms / 1000, .tv_nsec = (interval_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv) {
    if (argc < 6 || argc > 7) {
        fprintf(stderr,
                "usage: meter SENSOR_FILE REGISTER_DIR HEADEND_HOST:PORT INTERVAL_MS COUNT "
                "[PERSIST_EVERY]\n");
        return 2;
    }
    long interval_ms = atol(argv[4]);
    long count = atol(argv[5]);
    long persist_every = argc == 7 ? atol(argv[6]) : 10;
    if (persist_every <= 0) persist_every = 10;
    if (snprintf(register_dir, sizeof register_dir, "%s", argv[2]) >= (int)sizeof register_dir) {
        fprintf(stderr, "meter: register directory path too long\n");
        return 2;
    }
    open_sensor(argv[1]);
    load_energy();
    open_display();
    connect_headend(argv[3]);
    for (long i = 1; i <= count; i++) {
        long watts = read_sensor();
        if (watts == TRIGGER_WATTS) on_trigger();
        accumulate(watts, interval_ms > 0 ? interval_ms : 1000);
        write_display((unsigned)i);
        send_reading((unsigned)i, watts);
        if (i % persist_every == 0) persist_energy();
        pause_interval(interval_ms);
    }
    persist_energy();
    printf("%" PRIu64 "\n", energy_mwh);
    return 0;
}
