# The two commands of the README: `make demo` and `make test` set everything up first.
.PHONY: setup demo test lint bench messages-template translations

setup:
	bash deploy/install.sh

demo: setup
	.venv/bin/segbot demo

test: setup
	bash tests/run.sh

lint:
	.venv/bin/ruff check .

# Translations (docs/bot.md): the messages marked N_ / NP_ -> the template core/locale/segbot.pot
# (tests/test_i18n.py extracts the same way to check it is up to date), then each language's .po
# gets the new and changed msgids (fuzzy: to review) and is compiled; the install compiles too.
PYBABEL ?= .venv/bin/pybabel
LOCALES = core/locale
POT ?= $(LOCALES)/segbot.pot

messages-template:
	$(PYBABEL) -q extract -F babel.cfg --no-default-keywords -k N_ -k NP_:1,2 --add-comments=TRANSLATORS: \
	  --add-location=file --project=segbot --version=0.1.0 --copyright-holder="segbot authors" -o $(POT) .

translations: messages-template
	$(PYBABEL) -q update -i $(POT) -d $(LOCALES) -D segbot --ignore-obsolete
	$(PYBABEL) compile -d $(LOCALES) -D segbot --statistics
