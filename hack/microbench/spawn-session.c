/* Cost of what a child does between clone(CLONE_VM|CLONE_VFORK) and exec of
 * /bin/true: nothing, setsid, setpgid, setpgid and placing itself into five
 * cgroup v1 hierarchies (needs root and v1 pids, cpu, cpuacct, memory and
 * freezer; makes mbtest in each). Variants rotate in each round.
 * Build and run: gcc -O2 -o /tmp/spawn-session spawn-session.c && /tmp/spawn-session 3000 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static int mode; static int fds[5]; static int nf;
static char stack[65536];
static int child(void *a){
  if(mode==1) setsid(); else if(mode==2) setpgid(0,0);
  else if(mode==3){ setpgid(0,0); for(int i=0;i<nf;i++) write(fds[i],"0",1);}
  char *argv[]={"/bin/true",0}; char *envp[]={0}; execve("/bin/true",argv,envp); _exit(127);}
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec*1e6+t.tv_nsec/1e3;}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b; return x<y?-1:x>y;}
int main(int argc,char**argv){int n=atoi(argv[1]);
 const char *h[]={"pids","cpu","cpuacct","memory","freezer"};
 for(int i=0;i<5;i++){char p[256]; snprintf(p,256,"/sys/fs/cgroup/%s/mbtest",h[i]); mkdir(p,0755); strcat(p,"/tasks"); fds[i]=open(p,O_WRONLY|O_CLOEXEC); if(fds[i]<0){perror(p);return 1;}} nf=5;
 double *s[4]; for(int m=0;m<4;m++) s[m]=malloc(n*sizeof(double));
 for(int i=0;i<n;i++) for(int k=0;k<4;k++){ mode=(k+i)%4; double t=now(); int pid=clone(child,stack+65536,CLONE_VM|CLONE_VFORK|SIGCHLD,0); int st; waitpid(pid,&st,0); s[mode][i]=now()-t;}
 const char*nm[]={"none","setsid","setpgid","setpgid+5 tasks"};
 for(int m=0;m<4;m++){qsort(s[m],n,sizeof(double),cmp); printf("%-16s p50 %.1f us p25 %.1f\n", nm[m], s[m][n/2], s[m][n/4]);}
 for(int i=0;i<5;i++){char p[256]; snprintf(p,256,"/sys/fs/cgroup/%s/mbtest",h[i]); close(fds[i]); rmdir(p);}
}
