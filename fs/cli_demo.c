/* cli_demo.c - placeholder until the demo lands (see bfs_cmd_demo). */
#include "cli.h"
#include <stdio.h>
int bfs_cmd_demo(int argc, char **argv, const char *self)
{
    fprintf(stderr, "butlerfs: demo is not built yet\n");
    return 1;
}
