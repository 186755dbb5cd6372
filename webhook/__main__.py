from webhook.edges.cli import main

raise SystemExit(main())
