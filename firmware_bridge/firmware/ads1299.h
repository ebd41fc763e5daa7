/* Two ADS1299 (8 channels each, 24 bit) on one SPI bus in daisy-chain mode: 16 channels.
 * The first device drives the clock (CLK_EN) and DRDY; DOUT of the second feeds DAISY_IN of
 * the first, so one read clocks out both status words and all 16 channels. */
#ifndef EMG_ADS1299_H
#define EMG_ADS1299_H

#include <stdbool.h>
#include <stdint.h>

#define ADS_DEVICES 2
#define ADS_CHANNELS_PER_DEVICE 8
#define ADS_CHANNELS (ADS_DEVICES * ADS_CHANNELS_PER_DEVICE)

/* Microvolts per count at gain 24 and the internal 4.5 V reference: 4.5 V / 24 / 2^23. */
#define ADS_SCALE_UV 0.0223517418f

/* Reset, check the device ID, configure every channel (gain 24, normal electrode input,
 * SRB1 reference) at the given rate and enter continuous read mode.
 * Returns false when the chip does not answer or the rate is not one it supports
 * (250, 500, 1000, 2000, 4000, 8000, 16000 Hz). */
bool ads1299_init(uint32_t sample_rate);
bool ads1299_rate_supported(uint32_t sample_rate);
void ads1299_start(void);
void ads1299_stop(void);

/* After DRDY: clock out one sample of all channels as sign-extended counts. */
void ads1299_read_sample(int32_t counts[ADS_CHANNELS]);

#endif
