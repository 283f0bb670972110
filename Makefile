# The README's two commands; ./run does the work (see ./run help).
.PHONY: run test stop

run:
	./run

test:
	./run test

stop:
	./run stop
