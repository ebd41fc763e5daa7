/* Frame encoder and command parser of the wristband protocol v1 (see ../PROTOCOL.md). */
#include "frame.h"

#include <string.h>

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first, no final XOR. Bitwise: it covers
 * 6 header bytes per frame, a table would cost 512 bytes of flash for nothing. */
uint16_t crc16_ccitt_false(const uint8_t *data, size_t n)
{
    uint16_t crc = 0xFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)data[i] << 8;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* CRC-32 (IEEE 802.3, zlib): reflected poly 0xEDB88320, init and final XOR 0xFFFFFFFF.
 * Table-driven: it runs over ~1 kB per frame, 100 frames per second. */
static uint32_t crc32_table[256];
static int crc32_table_ready;

static void crc32_init_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int bit = 0; bit < 8; bit++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc32_table[i] = c;
    }
    crc32_table_ready = 1;
}

uint32_t crc32_ieee(const uint8_t *data, size_t n)
{
    if (!crc32_table_ready)
        crc32_init_table();
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        crc = crc32_table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f32(uint8_t *p, float v)
{
    uint32_t bits; /* IEEE 754 on every target we build for */
    memcpy(&bits, &v, sizeof bits);
    put_u32(p, bits);
}

/* Write the envelope around a body already at out + FRAME_HEADER_SIZE; returns frame size. */
static size_t seal(uint8_t *out, uint8_t type, size_t body_len)
{
    out[0] = FRAME_SYNC0;
    out[1] = FRAME_SYNC1;
    out[2] = FRAME_VERSION;
    out[3] = type;
    put_u16(out + 4, (uint16_t)body_len);
    put_u16(out + 6, crc16_ccitt_false(out, 6));
    size_t end = FRAME_HEADER_SIZE + body_len;
    put_u32(out + end, crc32_ieee(out, end));
    return end + FRAME_CRC_SIZE;
}

size_t frame_encode_data(uint8_t *out, size_t cap, uint32_t sequence, uint64_t first_sample,
                         uint16_t n, uint16_t channels, enum sample_format format, float scale,
                         const int32_t *counts)
{
    size_t values = (size_t)n * channels;
    size_t width = format == FORMAT_INT24 ? 3u : 2u;
    if ((format != FORMAT_INT24 && format != FORMAT_INT16) || n == 0 || channels == 0
        || channels > FRAME_MAX_CHANNELS || values > FRAME_MAX_VALUES)
        return 0;
    size_t body_len = FRAME_DATA_HEADER_SIZE + values * width;
    if (FRAME_HEADER_SIZE + body_len + FRAME_CRC_SIZE > cap)
        return 0;
    int32_t lo = format == FORMAT_INT24 ? -8388608 : -32768;
    int32_t hi = format == FORMAT_INT24 ? 8388607 : 32767;

    uint8_t *b = out + FRAME_HEADER_SIZE;
    put_u32(b, sequence);
    put_u64(b + 4, first_sample);
    put_u16(b + 12, n);
    put_u16(b + 14, channels);
    b[16] = (uint8_t)format;
    b[17] = 0;
    put_f32(b + 18, scale);
    uint8_t *p = b + FRAME_DATA_HEADER_SIZE;
    for (size_t i = 0; i < values; i++) {
        int32_t v = counts[i] < lo ? lo : counts[i] > hi ? hi : counts[i];
        uint32_t u = (uint32_t)v; /* two's complement, low bytes first */
        for (size_t k = 0; k < width; k++)
            *p++ = (uint8_t)(u >> (8 * k));
    }
    return seal(out, FRAME_DATA, body_len);
}

/* Append a u8-length-prefixed string; returns the new offset or 0 when it does not fit. */
static size_t put_string(uint8_t *out, size_t off, size_t cap, const char *s, size_t limit)
{
    size_t len = s ? strlen(s) : 0;
    if (len > limit || off + 1 + len > cap)
        return 0;
    out[off] = (uint8_t)len;
    memcpy(out + off + 1, s, len);
    return off + 1 + len;
}

size_t frame_encode_info(uint8_t *out, size_t cap, const struct device_info *info)
{
    if (info->channels == 0 || info->channels > FRAME_MAX_CHANNELS
        || cap < FRAME_HEADER_SIZE + 14 + FRAME_CRC_SIZE)
        return 0;
    size_t body_cap = cap - FRAME_CRC_SIZE;
    uint8_t *b = out + FRAME_HEADER_SIZE;
    put_u16(b, info->channels);
    put_u32(b + 2, info->sample_rate);
    b[6] = (uint8_t)info->format;
    b[7] = 0;
    put_f32(b + 8, info->scale);
    put_u16(b + 12, info->samples_per_frame);
    size_t off = FRAME_HEADER_SIZE + 14;
    const char *strings[4] = {info->serial_number, info->firmware_version, info->manufacturer,
                              info->model};
    for (int i = 0; i < 4; i++)
        if (!(off = put_string(out, off, body_cap, strings[i], 64)))
            return 0;
    for (uint16_t c = 0; c < info->channels; c++)
        if (!(off = put_string(out, off, body_cap, info->channel_names[c], 32)))
            return 0;
    return seal(out, FRAME_DEVICE_INFO, off - FRAME_HEADER_SIZE);
}

size_t frame_encode_ack(uint8_t *out, size_t cap, uint8_t command, enum ack_status status)
{
    if (cap < FRAME_HEADER_SIZE + 2 + FRAME_CRC_SIZE)
        return 0;
    out[FRAME_HEADER_SIZE] = command;
    out[FRAME_HEADER_SIZE + 1] = (uint8_t)status;
    return seal(out, FRAME_ACK, 2);
}

void command_parser_init(struct command_parser *p)
{
    p->len = 0;
}

/* Drop the first buffered byte and slide to the next possible sync. */
static void resync(struct command_parser *p)
{
    size_t i = 1;
    while (i < p->len && p->buf[i] != FRAME_SYNC0)
        i++;
    memmove(p->buf, p->buf + i, p->len - i);
    p->len -= i;
}

int command_parser_push(struct command_parser *p, uint8_t byte, struct command *cmd)
{
    if (p->len == 0 && byte != FRAME_SYNC0)
        return 0;
    p->buf[p->len++] = byte;
    for (;;) {
        if (p->len >= 2 && p->buf[1] != FRAME_SYNC1) {
            resync(p);
            continue;
        }
        if (p->len < FRAME_HEADER_SIZE)
            return 0;
        uint16_t body_len = (uint16_t)(p->buf[4] | p->buf[5] << 8);
        uint16_t crc = (uint16_t)(p->buf[6] | p->buf[7] << 8);
        size_t size = FRAME_HEADER_SIZE + body_len + FRAME_CRC_SIZE;
        if (p->buf[2] != FRAME_VERSION || size > sizeof p->buf
            || crc16_ccitt_false(p->buf, 6) != crc) {
            resync(p);
            continue;
        }
        if (p->len < size)
            return 0;
        size_t end = size - FRAME_CRC_SIZE;
        uint32_t want = (uint32_t)p->buf[end] | (uint32_t)p->buf[end + 1] << 8
                        | (uint32_t)p->buf[end + 2] << 16 | (uint32_t)p->buf[end + 3] << 24;
        if (crc32_ieee(p->buf, end) != want) {
            resync(p);
            continue;
        }
        uint8_t type = p->buf[3];
        int ok = 0;
        if (type == FRAME_SET_RATE && body_len == 4) {
            const uint8_t *b = p->buf + FRAME_HEADER_SIZE;
            cmd->rate = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16
                        | (uint32_t)b[3] << 24;
            ok = 1;
        } else if ((type == FRAME_START || type == FRAME_STOP || type == FRAME_QUERY_INFO)
                   && body_len == 0) {
            cmd->rate = 0;
            ok = 1;
        }
        cmd->type = (enum frame_type)type;
        p->len = 0; /* a whole checked frame: consumed whether we know it or not */
        return ok;
    }
}
