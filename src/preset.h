/*-------------------------------------------------------------------------
 *
 * preset.h
 *		National presets of create_series(): the format and the rules a
 *		country's invoice numbers must follow, fixed and checked.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_PRESET_H
#define INVOICE_SEQ_PRESET_H

#include "invoice_seq.h"

/* What create_series() may set, before a preset fixes it. */
typedef struct SeriesSettings
{
	const char *name;
	SeriesReset reset;
	bool		reset_given;	/* asked for, not the default */
	char	   *format;
	bool		format_given;
	bool		chronological;
	const char *validation_code;	/* NULL if none */
} SeriesSettings;

extern SeriesPreset preset_parse(const char *name);
extern const char *preset_name(SeriesPreset preset);
extern void preset_apply(SeriesPreset preset, SeriesSettings *settings);
extern void preset_check_alter(const InvoiceSeries *series, bool new_format,
							   bool chronological_off);
extern void preset_check_number(const InvoiceSeries *series, int64 invoice_no);

#endif							/* INVOICE_SEQ_PRESET_H */
