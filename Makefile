# invoice_seq: gap-free invoice numbering for PostgreSQL
#
#   make && make install          build and install (PGXS)
#   make installcheck             all suites, each on a throwaway instance
#   make regresscheck | isolationcheck | tapcheck
#                                 one suite
#
# The suites start their own server with the extension preloaded, so they
# must run as an ordinary user (initdb refuses root); test/run_all does the
# whole job from a fresh machine.

MODULE_big = invoice_seq
OBJS = \
	src/alloc.o \
	src/audit.o \
	src/caller.o \
	src/chain.o \
	src/close.o \
	src/invoice_seq.o \
	src/ledger.o \
	src/launch.o \
	src/ledger_am.o \
	src/ledger_write.o \
	src/number.o \
	src/preset.o \
	src/record.o \
	src/record_guard.o \
	src/remote.o \
	src/request.o \
	src/seal_due.o \
	src/sequencer.o \
	src/series.o \
	src/util.o
PGFILEDESC = "invoice_seq - gap-free, crash-safe invoice numbering"

# A VPATH build (pg_buildext builds in build-N/) puts the objects in src/
# there.
ifdef VPATH
$(shell mkdir -p src)
endif

EXTENSION = invoice_seq
DATA = invoice_seq--1.0.sql invoice_seq--1.0--1.1.sql invoice_seq--1.1--1.2.sql \
	invoice_seq--1.2--1.3.sql invoice_seq--1.3--1.4.sql invoice_seq--1.4--1.5.sql

REGRESS = setup series reserve confirm_void check_series next_invoice chronology ledger_am tenants attacks stats bad_input chain presets callers closing ledger_write guards
REGRESS_OPTS = --temp-instance=tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf --encoding=UTF8 --no-locale

ISOLATION = same_key_race reserve_while_open confirm_void_race rollback_after_reserve \
	own_locks key_row_busy owner_change stale_holder closing_race \
	series_lock one_step_recycle one_step_open one_step_mixed one_step_prepare \
	key_race_paths free_numbers drop_archive_race
ISOLATION_OPTS = --inputdir=$(srcdir)/test --temp-instance=tmp_check_iso \
	--temp-config=$(srcdir)/test/isolation.conf --encoding=UTF8 --no-locale

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl
PROVE_FLAGS = -I $(srcdir)/test/perl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso

# The Debian package's autopkgtest (debian/tests/installcheck) runs the
# regression tests against the installed package, on the server that
# pg_virtualenv starts with the library preloaded.
ifdef PACKAGE_TEST
REGRESS_OPTS = --encoding=UTF8 --no-locale
ISOLATION =
TAP_TESTS =
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies: rebuild everything when any
# header changes.
$(OBJS): $(wildcard $(srcdir)/src/*.h)

.PHONY: regresscheck isolationcheck tapcheck

regresscheck:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

isolationcheck:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

tapcheck:
	$(prove_installcheck)
