"""The command line: parsing, commands and rendering; the only package that imports every other."""
