from llmprof.cli import interrupts, main

interrupts.for_the_process()
status = main()
interrupts.exiting()
raise SystemExit(status)
