from entityflow.cli import main

main()
