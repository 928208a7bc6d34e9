# The two commands of the README: `make demo` and `make test` set everything up first.
.PHONY: setup demo test lint bench

setup:
	bash deploy/install.sh

demo: setup
	.venv/bin/segbot demo

test: setup
	bash tests/run.sh

lint:
	.venv/bin/ruff check .
