#!/bin/sh
# Prints the greeting baked in at build time.
echo "$(cat /etc/greeting) from an image built and shipped by kiln"
