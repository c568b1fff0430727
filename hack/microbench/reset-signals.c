/* What a child pays to set every signal back to SIG_DFL (what auraed's
 * vfork child did before exec), against asking the kernel for each
 * disposition, against opening /dev/null.
 * Build and run: gcc -O2 -o /tmp/reset-signals reset-signals.c && /tmp/reset-signals */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec*1e6+t.tv_nsec/1e3;}
int main(){
  struct sigaction dfl, old; memset(&dfl,0,sizeof dfl); dfl.sa_handler=SIG_DFL;
  int n=20000, calls=0; double t=now();
  for(int i=0;i<n;i++) for(int s=1;s<65;s++){ if(s==SIGKILL||s==SIGSTOP) continue; sigaction(s,&dfl,NULL); if(!i) calls++; }
  printf("set %d signals to SIG_DFL: %.2f us\n",calls,(now()-t)/n);
  t=now();
  for(int i=0;i<n;i++) for(int s=1;s<65;s++){ if(s==SIGKILL||s==SIGSTOP) continue; sigaction(s,NULL,&old); }
  printf("read %d dispositions: %.2f us\n",calls,(now()-t)/n);
  t=now();
  for(int i=0;i<n*5;i++){ int fd=open("/dev/null",O_RDONLY|O_CLOEXEC); close(fd); }
  printf("open+close /dev/null: %.2f us\n",(now()-t)/(n*5));
}
