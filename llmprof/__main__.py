from llmprof.cli import main

raise SystemExit(main())
