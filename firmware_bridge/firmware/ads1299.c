/* ADS1299 driver: register set-up and the daisy-chained sample read (datasheet SBAS499). */
#include "ads1299.h"

#include "hal.h"

enum {
    CMD_WAKEUP = 0x02, CMD_STANDBY = 0x04, CMD_RESET = 0x06, CMD_START = 0x08,
    CMD_STOP = 0x0A, CMD_RDATAC = 0x10, CMD_SDATAC = 0x11, CMD_RREG = 0x20, CMD_WREG = 0x40,
};

enum {
    REG_ID = 0x00, REG_CONFIG1 = 0x01, REG_CONFIG2 = 0x02, REG_CONFIG3 = 0x03,
    REG_CH1SET = 0x05, REG_BIAS_SENSP = 0x0D, REG_BIAS_SENSN = 0x0E, REG_MISC1 = 0x15,
};

/* Per device: 3 status bytes then 8 channels of 3 bytes, MSB first. */
#define ADS_BYTES_PER_DEVICE (3 + 3 * ADS_CHANNELS_PER_DEVICE)

static void command(uint8_t op)
{
    hal_spi_transfer(&op, 0, 1);
    hal_delay_us(2); /* 4 tCLK between a command and the next SPI access */
}

/* Daisy chain in command mode: both devices see the same command and register writes. */
static void write_reg(uint8_t reg, uint8_t value)
{
    const uint8_t tx[3] = {(uint8_t)(CMD_WREG | reg), 0x00, value};
    hal_spi_transfer(tx, 0, sizeof tx);
    hal_delay_us(2);
}

static uint8_t read_reg(uint8_t reg)
{
    const uint8_t tx[3] = {(uint8_t)(CMD_RREG | reg), 0x00, 0x00};
    uint8_t rx[3];
    hal_spi_transfer(tx, rx, sizeof tx);
    return rx[2];
}

/* CONFIG1 DR[2:0]: rate = fMOD / 2^(5 + DR) with fMOD = 512 kHz: 16 kHz at 0, 250 Hz at 6. */
static int rate_code(uint32_t rate)
{
    static const uint32_t rates[] = {16000, 8000, 4000, 2000, 1000, 500, 250};
    for (int i = 0; i < 7; i++)
        if (rates[i] == rate)
            return i;
    return -1;
}

bool ads1299_rate_supported(uint32_t sample_rate)
{
    return rate_code(sample_rate) >= 0;
}

bool ads1299_init(uint32_t sample_rate)
{
    int dr = rate_code(sample_rate);
    if (dr < 0)
        return false;
    hal_ads_start_pin(false);
    hal_ads_reset_pulse();
    hal_delay_us(50); /* 18 tCLK after reset, with margin */
    command(CMD_SDATAC); /* registers are only writable outside continuous read */
    if ((read_reg(REG_ID) & 0x1Fu) != 0x1Eu) /* ADS1299 family ID, 8-channel variant */
        return false;
    /* CONFIG1: reserved bit 7 and bit 4 set, DAISY_EN = 0 (daisy chain), CLK_EN = 1 (acts on
     * the first device only: the board ties CLKSEL of the second low so it runs from the
     * first's clock and both convert in lockstep), DR = rate. */
    write_reg(REG_CONFIG1, (uint8_t)(0x90u | 0x20u | (uint8_t)dr));
    write_reg(REG_CONFIG2, 0xC0); /* test signal off */
    write_reg(REG_CONFIG3, 0xEC); /* internal reference buffer on, bias buffer on */
    hal_delay_us(150000); /* reference settling */
    for (uint8_t ch = 0; ch < ADS_CHANNELS_PER_DEVICE; ch++)
        write_reg((uint8_t)(REG_CH1SET + ch), 0x60); /* gain 24, normal electrode input */
    write_reg(REG_BIAS_SENSP, 0xFF); /* bias drive from every positive input */
    write_reg(REG_BIAS_SENSN, 0x00);
    write_reg(REG_MISC1, 0x20); /* SRB1: common reference on all negative inputs */
    command(CMD_RDATAC);
    return true;
}

void ads1299_start(void)
{
    hal_ads_start_pin(true);
}

void ads1299_stop(void)
{
    hal_ads_start_pin(false);
}

void ads1299_read_sample(int32_t counts[ADS_CHANNELS])
{
    static const uint8_t zeros[ADS_DEVICES * ADS_BYTES_PER_DEVICE];
    uint8_t rx[ADS_DEVICES * ADS_BYTES_PER_DEVICE];
    hal_spi_transfer(zeros, rx, sizeof rx);
    for (int dev = 0; dev < ADS_DEVICES; dev++) {
        const uint8_t *p = rx + dev * ADS_BYTES_PER_DEVICE + 3; /* skip the status word */
        for (int ch = 0; ch < ADS_CHANNELS_PER_DEVICE; ch++, p += 3) {
            uint32_t u = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            counts[dev * ADS_CHANNELS_PER_DEVICE + ch] = (int32_t)(u ^ 0x800000u) - 0x800000;
        }
    }
}
