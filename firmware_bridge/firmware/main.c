/* Wristband firmware main loop: on each DRDY read one sample of 16 channels, batch
 * SAMPLES_PER_FRAME samples into a DATA frame, send it; between samples handle host commands.
 *
 * Timing at 2 kHz: 500 us per sample. Reading 54 bytes at 8 MHz SPI takes ~60 us; encoding
 * and CRC of a 994-byte frame takes well under the remaining time on a Cortex-M4 at 64 MHz,
 * once every 20 samples. The UART/USB driver sends from its own buffer (DMA). */
#include <stdbool.h>
#include <stdint.h>

#include "ads1299.h"
#include "frame.h"
#include "hal.h"

#define SAMPLES_PER_FRAME 20u
#define DEFAULT_RATE 2000u
#define FIRMWARE_VERSION "1.0.0"

static const char *const channel_names[ADS_CHANNELS] = {
    "EMG1", "EMG2", "EMG3", "EMG4", "EMG5", "EMG6", "EMG7", "EMG8",
    "EMG9", "EMG10", "EMG11", "EMG12", "EMG13", "EMG14", "EMG15", "EMG16",
};

static int32_t batch[SAMPLES_PER_FRAME * ADS_CHANNELS];
static uint8_t tx[FRAME_HEADER_SIZE + FRAME_DATA_HEADER_SIZE
                  + 3u * SAMPLES_PER_FRAME * ADS_CHANNELS + FRAME_CRC_SIZE];
static uint8_t reply[1024]; /* DEVICE_INFO of 16 channels is ~200 bytes */

static struct {
    bool streaming;
    uint32_t rate;
    uint32_t sequence;     /* DATA frames sent or dropped, wraps */
    uint64_t counter;      /* samples acquired since START, never wraps */
    uint64_t batch_first;  /* counter of batch[0] */
    uint16_t batched;
} state = {false, DEFAULT_RATE, 0, 0, 0, 0};

/* A frame goes out whole or not at all: half a frame would cost the host a resync. A DATA
 * frame dropped here (host not reading) still advanced the sequence number and the sample
 * counter, so the host counts the exact gap. */
static void send_whole(const uint8_t *frame, size_t n)
{
    if (n && hal_uart_tx_free() >= n)
        hal_uart_write(frame, n);
}

static void send_info(void)
{
    const struct device_info info = {
        .channels = ADS_CHANNELS,
        .sample_rate = state.rate,
        .format = FORMAT_INT24,
        .scale = ADS_SCALE_UV,
        .samples_per_frame = SAMPLES_PER_FRAME,
        .serial_number = hal_serial_number(),
        .firmware_version = FIRMWARE_VERSION,
        .manufacturer = "emgstream",
        .model = "wristband-16 (2x ADS1299)",
        .channel_names = channel_names,
    };
    send_whole(reply, frame_encode_info(reply, sizeof reply, &info));
}

static void ack(uint8_t command, enum ack_status status)
{
    send_whole(reply, frame_encode_ack(reply, sizeof reply, command, status));
}

static void handle(const struct command *cmd)
{
    switch (cmd->type) {
    case FRAME_START:
        if (!state.streaming) {
            state.counter = 0;
            state.batched = 0;
            state.streaming = true;
            ads1299_start();
        }
        ack(FRAME_START, ACK_OK);
        break;
    case FRAME_STOP:
        ads1299_stop();
        state.streaming = false;
        ack(FRAME_STOP, ACK_OK);
        break;
    case FRAME_SET_RATE:
        if (state.streaming || !ads1299_rate_supported(cmd->rate)) {
            ack(FRAME_SET_RATE, ACK_BAD_ARGUMENT);
        } else {
            state.rate = cmd->rate;
            ack(FRAME_SET_RATE, ads1299_init(state.rate) ? ACK_OK : ACK_BAD_ARGUMENT);
        }
        break;
    case FRAME_QUERY_INFO:
        send_info();
        break;
    default:
        ack((uint8_t)cmd->type, ACK_UNSUPPORTED);
        break;
    }
}

static void poll_commands(struct command_parser *parser)
{
    uint8_t rx[32];
    size_t n = hal_uart_read(rx, sizeof rx);
    struct command cmd;
    for (size_t i = 0; i < n; i++)
        if (command_parser_push(parser, rx[i], &cmd))
            handle(&cmd);
}

int main(void)
{
    struct command_parser parser;
    command_parser_init(&parser);
    while (!ads1299_init(state.rate))
        hal_delay_us(100000); /* no ADC answer yet (power-up): retry */

    for (;;) {
        poll_commands(&parser);
        if (!state.streaming || !hal_drdy_wait(1000))
            continue;
        if (state.batched == 0)
            state.batch_first = state.counter;
        ads1299_read_sample(batch + state.batched * ADS_CHANNELS);
        state.counter++;
        if (++state.batched == SAMPLES_PER_FRAME) {
            size_t n = frame_encode_data(tx, sizeof tx, state.sequence++, state.batch_first,
                                         SAMPLES_PER_FRAME, ADS_CHANNELS, FORMAT_INT24,
                                         ADS_SCALE_UV, batch);
            send_whole(tx, n);
            state.batched = 0;
        }
    }
}
