"""Run the edge agent on its own: python -m edge_agent --site ... --mqtt ... --agent-id ..."""

import sys

from edge_agent.cli import main

sys.exit(main())
