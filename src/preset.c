/*-------------------------------------------------------------------------
 *
 * preset.c
 *		National presets of create_series().
 *
 * A preset fixes what a country's rule fixes, checks what it constrains,
 * and keeps alter_series() from undoing it.  Each rule enforced here is
 * public and checkable; what a preset leaves to the application is in the
 * README ("National presets").
 *
 *	tr_efatura	Turkey, e-Fatura and e-Arsiv (GIB): the invoice number is a
 *				3-character series code, the 4-digit year and a 9-digit
 *				sequence, ^[A-Z0-9]{3}20[0-9]{2}[0-9]{9}$, restarting every
 *				year, in chronological order.
 *	pt_atcud	Portugal (Portaria 195/2020): every document carries the
 *				ATCUD, "<validation code>-<sequential number>", the code being
 *				the one the tax authority (AT) issued for the series, at
 *				least 8 characters; numbering is in chronological order.
 *	fr			France (CGI art. 242 nonies A, BOI-TVA-DECLA-30-20-20): a
 *				unique, continuous, chronological numbering; an issued
 *				invoice is cancelled by a credit note, never voided (always
 *				true in invoice_seq).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "preset.h"

#define TR_MAX_NO		INT64CONST(999999999)	/* 9 digits */

static const char *const preset_names[] = {
	[PRESET_NONE] = "",
	[PRESET_TR_EFATURA] = "tr_efatura",
	[PRESET_PT_ATCUD] = "pt_atcud",
	[PRESET_FR] = "fr",
};

SeriesPreset
preset_parse(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return PRESET_NONE;
	for (int p = PRESET_TR_EFATURA; p <= PRESET_FR; p++)
		if (strcmp(name, preset_names[p]) == 0)
			return (SeriesPreset) p;
	/* a name read back from series_def is always known */
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown series preset \"%s\"", name),
			 errhint("The presets are 'tr_efatura', 'pt_atcud' and 'fr'.")));
	return PRESET_NONE;			/* keep compiler quiet */
}

const char *
preset_name(SeriesPreset preset)
{
	return preset_names[preset];
}

/* Does s consist of n or more characters of [A-Z0-9], exactly n if exact? */
static bool
upper_alnum(const char *s, size_t n, bool exact)
{
	size_t		len = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");

	return s[len] == '\0' && (exact ? len == n : len >= n);
}

static void
refuse_setting(const SeriesSettings *s, const char *what, const char *rule)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s for invoice series \"%s\"", what, s->name),
			 errdetail("%s", rule)));
}

/*
 * Fix and check the settings of a new series for its preset.  Asking for a
 * setting the preset fixes is an error; chronological order is always on.
 */
void
preset_apply(SeriesPreset preset, SeriesSettings *s)
{
	if (preset != PRESET_PT_ATCUD && s->validation_code != NULL)
		refuse_setting(s, "validation_code",
					   "Only the pt_atcud preset takes a validation code.");
	if (s->format_given && preset != PRESET_FR && preset != PRESET_NONE)
		refuse_setting(s, "format", "The preset fixes the format.");
	if (s->reset_given && preset == PRESET_TR_EFATURA)
		refuse_setting(s, "reset", "e-Fatura numbering restarts every year.");
	switch (preset)
	{
		case PRESET_NONE:
			return;
		case PRESET_TR_EFATURA:
			if (!upper_alnum(s->name, 3, true))
				refuse_setting(s, "name",
							   "An e-Fatura series code has exactly 3 characters, A-Z or 0-9.");
			s->reset = SERIES_RESET_YEARLY;
			s->format = psprintf("%s{YYYY}{n:9}", s->name);
			break;
		case PRESET_PT_ATCUD:
			if (s->validation_code == NULL || !upper_alnum(s->validation_code, 8, false))
				refuse_setting(s, "validation_code",
							   "The ATCUD validation code the AT issued for the series has at least 8 characters, A-Z or 0-9.");
			s->format = psprintf("%s-{n}", s->validation_code);
			break;
		case PRESET_FR:
			break;
	}
	s->chronological = true;
}

/* Refuse what alter_series() would change of a preset's rules. */
void
preset_check_alter(const InvoiceSeries *series, bool new_format,
				   bool chronological_off)
{
	if (series->preset == PRESET_NONE)
		return;
	if ((new_format && series->preset != PRESET_FR) || chronological_off)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot change the %s of invoice series \"%s\"",
						chronological_off ? "order" : "format", series->name),
				 errdetail("The series follows preset \"%s\", which fixes it.",
						   preset_name(series->preset))));
}

/* Refuse a number the preset's display number cannot hold. */
void
preset_check_number(const InvoiceSeries *series, int64 invoice_no)
{
	if (series->preset == PRESET_TR_EFATURA && invoice_no > TR_MAX_NO)
		ereport(ERROR,
				(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
				 errmsg("invoice series \"%s\" has reached the largest number of its preset, " INT64_FORMAT,
						series->name, TR_MAX_NO),
				 errdetail("An e-Fatura number has a 9-digit sequence."),
				 errhint("Number the rest of the year under a new series code.")));
}
