/* Frame encoder and command parser of the wristband protocol v1 (see ../PROTOCOL.md).
 * No hardware: this file builds on the host and is checked byte for byte against
 * firmware_bridge/codec.py. */
#ifndef EMG_FRAME_H
#define EMG_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_SYNC0 0xEBu
#define FRAME_SYNC1 0x90u
#define FRAME_VERSION 1u
#define FRAME_HEADER_SIZE 8u
#define FRAME_CRC_SIZE 4u
#define FRAME_DATA_HEADER_SIZE 22u
#define FRAME_MAX_VALUES 4096u
#define FRAME_MAX_CHANNELS 256u
#define FRAME_MAX_BODY (FRAME_DATA_HEADER_SIZE + 3u * FRAME_MAX_VALUES)
#define FRAME_MAX_SIZE (FRAME_HEADER_SIZE + FRAME_MAX_BODY + FRAME_CRC_SIZE)

enum frame_type {
    FRAME_DATA = 0x01,
    FRAME_DEVICE_INFO = 0x02,
    FRAME_ACK = 0x03,
    FRAME_START = 0x10,
    FRAME_STOP = 0x11,
    FRAME_SET_RATE = 0x12,
    FRAME_QUERY_INFO = 0x13,
};

enum sample_format { FORMAT_INT24 = 1, FORMAT_INT16 = 2 };

enum ack_status { ACK_OK = 0, ACK_BAD_ARGUMENT = 1, ACK_UNSUPPORTED = 2 };

uint16_t crc16_ccitt_false(const uint8_t *data, size_t n);
uint32_t crc32_ieee(const uint8_t *data, size_t n);

/* Encode a DATA frame of n samples x channels counts (time-major, saturated to the format's
 * range) into out. Returns the frame size, or 0 when the arguments break the protocol's
 * bounds or the frame does not fit in cap bytes. */
size_t frame_encode_data(uint8_t *out, size_t cap, uint32_t sequence, uint64_t first_sample,
                         uint16_t n, uint16_t channels, enum sample_format format, float scale,
                         const int32_t *counts);

struct device_info {
    uint16_t channels;
    uint32_t sample_rate;
    enum sample_format format;
    float scale;
    uint16_t samples_per_frame;
    const char *serial_number, *firmware_version, *manufacturer, *model;
    const char *const *channel_names; /* channels entries */
};

size_t frame_encode_info(uint8_t *out, size_t cap, const struct device_info *info);
size_t frame_encode_ack(uint8_t *out, size_t cap, uint8_t command, enum ack_status status);

/* Streaming parser of host commands: feed bytes, get whole checked commands. */
struct command {
    enum frame_type type;
    uint32_t rate; /* SET_RATE only */
};

struct command_parser {
    uint8_t buf[32]; /* commands are at most 16 bytes */
    size_t len;
};

void command_parser_init(struct command_parser *p);
/* Consume one byte; returns 1 and fills cmd when it completes a valid command frame. */
int command_parser_push(struct command_parser *p, uint8_t byte, struct command *cmd);

#endif
