from softsym.cli import main

main()
