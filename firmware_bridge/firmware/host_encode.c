/* Host harness of frame.c, so a test can compare it byte for byte with firmware_bridge/codec.py.
 *
 *   host_encode             reads frame requests from stdin, writes DATA frames to stdout.
 *                           Each request, little-endian: u32 sequence, u64 first sample,
 *                           u16 n, u16 channels, u8 format, f32 scale, then n * channels
 *                           int32 counts (time-major).
 *   host_encode --info      writes the DEVICE_INFO of a fixed 3-channel device, then an ACK.
 *   host_encode --commands  feeds stdin to the command parser byte by byte and prints one
 *                           line "type rate" per command it accepts.
 *
 * Build: gcc -std=c99 -O2 -Wall -Wextra -o host_encode host_encode.c frame.c */
#include <stdio.h>
#include <string.h>

#include "frame.h"

static int read_exact(void *dst, size_t n)
{
    return fread(dst, 1, n, stdin) == n;
}

static unsigned long long get_le(const unsigned char *p, int n)
{
    unsigned long long v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int info_and_ack(void)
{
    static const char *const names[3] = {"EMG1", "flexor", ""};
    const struct device_info info = {
        .channels = 3, .sample_rate = 4000, .format = FORMAT_INT16, .scale = 0.25f,
        .samples_per_frame = 40, .serial_number = "SN-1", .firmware_version = "2.1",
        .manufacturer = "Acme", .model = "band", .channel_names = names,
    };
    uint8_t out[512];
    size_t n = frame_encode_info(out, sizeof out, &info);
    n += frame_encode_ack(out + n, sizeof out - n, FRAME_SET_RATE, ACK_BAD_ARGUMENT);
    return fwrite(out, 1, n, stdout) == n ? 0 : 1;
}

static int parse_commands(void)
{
    struct command_parser parser;
    struct command cmd;
    int c;
    command_parser_init(&parser);
    while ((c = getchar()) != EOF)
        if (command_parser_push(&parser, (uint8_t)c, &cmd))
            printf("%d %lu\n", (int)cmd.type, (unsigned long)cmd.rate);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--info") == 0)
        return info_and_ack();
    if (argc > 1 && strcmp(argv[1], "--commands") == 0)
        return parse_commands();
    static int32_t counts[FRAME_MAX_VALUES];
    static uint8_t out[FRAME_MAX_SIZE];
    unsigned char head[21];
    while (read_exact(head, sizeof head)) {
        uint32_t sequence = (uint32_t)get_le(head, 4);
        uint64_t first = get_le(head + 4, 8);
        uint16_t n = (uint16_t)get_le(head + 12, 2);
        uint16_t channels = (uint16_t)get_le(head + 14, 2);
        enum sample_format format = (enum sample_format)head[16];
        uint32_t scale_bits = (uint32_t)get_le(head + 17, 4);
        float scale;
        memcpy(&scale, &scale_bits, sizeof scale);
        size_t values = (size_t)n * channels;
        if (values > FRAME_MAX_VALUES) {
            fprintf(stderr, "request of %zu values exceeds %u\n", values, FRAME_MAX_VALUES);
            return 2;
        }
        unsigned char raw[4];
        for (size_t i = 0; i < values; i++) {
            if (!read_exact(raw, 4)) {
                fprintf(stderr, "truncated request\n");
                return 2;
            }
            counts[i] = (int32_t)(uint32_t)get_le(raw, 4);
        }
        size_t size = frame_encode_data(out, sizeof out, sequence, first, n, channels, format,
                                        scale, counts);
        if (size == 0) {
            fprintf(stderr, "frame_encode_data rejected the request\n");
            return 3;
        }
        fwrite(out, 1, size, stdout);
    }
    return 0;
}
