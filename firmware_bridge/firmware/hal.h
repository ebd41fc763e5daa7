/* Hardware abstraction for the wristband firmware: the only functions that touch the MCU.
 *
 * A board port implements these (SPI master mode 1, DRDY on a falling-edge GPIO, a UART or
 * USB CDC endpoint, a microsecond clock). Everything else in this folder is plain C99 and
 * builds on any host, which is how frame.c is tested against the Python codec.
 */
#ifndef EMG_HAL_H
#define EMG_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Full-duplex SPI transfer of n bytes with chip select held low for the whole transfer.
 * rx may be NULL when the answer is not needed. */
void hal_spi_transfer(const uint8_t *tx, uint8_t *rx, size_t n);

/* Drive the ADS1299 START pin (both devices share it) and the RESET/PWDN pins. */
void hal_ads_start_pin(bool high);
void hal_ads_reset_pulse(void);

/* Wait until DRDY (from the first device of the daisy chain) goes low.
 * Returns false on timeout. */
bool hal_drdy_wait(uint32_t timeout_us);

/* Free space in the TX buffer (UART DMA ring or USB CDC FIFO), and queue bytes for the host
 * (never more than hal_uart_tx_free() said). */
size_t hal_uart_tx_free(void);
void hal_uart_write(const uint8_t *data, size_t n);

/* Bytes the host sent, non-blocking; returns how many were copied into buf. */
size_t hal_uart_read(uint8_t *buf, size_t max);

/* Free-running microsecond clock (wraps at 2^32) and a busy wait. */
uint32_t hal_micros(void);
void hal_delay_us(uint32_t us);

/* The board's serial number, as text, for DEVICE_INFO. */
const char *hal_serial_number(void);

#endif
