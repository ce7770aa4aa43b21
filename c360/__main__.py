from c360.cli import main

raise SystemExit(main())
