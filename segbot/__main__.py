from segbot.cli import main

main()
