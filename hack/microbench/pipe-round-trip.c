/* Round trip of one byte between two processes over two pipes.
 * Build and run: gcc -O2 -o /tmp/pipe-rt pipe-round-trip.c && /tmp/pipe-rt && taskset -c 0 /tmp/pipe-rt */
#include <stdio.h>
#include <unistd.h>
#include <time.h>
#include <sys/wait.h>
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec*1e6+t.tv_nsec/1e3;}
int main(){int a[2],b[2]; pipe(a); pipe(b); char c='x'; int n=20000;
 if(fork()==0){ for(int i=0;i<n;i++){read(a[0],&c,1); write(b[1],&c,1);} _exit(0);}
 double t=now(); for(int i=0;i<n;i++){write(a[1],&c,1); read(b[0],&c,1);} printf("pipe round trip %.1f us\n",(now()-t)/n); wait(0);}
