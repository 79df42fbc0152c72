import sys

from gateway.standin.main import main

sys.exit(main())
