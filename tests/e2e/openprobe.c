/* openprobe: the in-container half of mighook's end-to-end tests.
 *
 * Built with `gcc -static -O2` so it runs in a bare busybox rootfs. Each
 * argument is one probe; each probe prints one line (ls/cat print one line per
 * entry) that tests/support/probe.rs parses:
 *
 *   PATH                  stat + open:          "PATH: type=c MAJ:MIN mode=0666 owner=UID:GID acc=rw open=OK|FAIL errno=N"
 *                         (acc=r: opened O_RDONLY because the mode has no write bit)
 *                         stat failed:          "PATH: stat errno=N"
 *   mknod:PATH:MAJ:MIN[:MODE]  mknod a char node (octal MODE, default 0666) first, then
 *                         probe PATH as above (a 0444 node is opened read-only);
 *                         mknod failed:         "PATH: mknod errno=N"
 *   ls:DIR                one "ls:DIR: entry=NAME" per entry (no . and ..),
 *                         opendir failed:       "ls:DIR: errno=N"
 *   cat:FILE              one "cat:FILE: line=TEXT" per line,
 *                         open failed:          "cat:FILE: errno=N"
 *
 * The last line is always "probe: done", so a truncated run is detectable. The
 * exit status is 0 whatever the probes found: the test judges the lines.
 *
 * Open errno is the point of the whole exercise: with a char major that no
 * driver registered (195/508/511 on a GPU-less host), open() gives ENXIO (6)
 * when the devices cgroup allows the node and EPERM (1) when it denies it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

static void probe(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    printf("%s: stat errno=%d\n", path, errno);
    return;
  }
  char kind = S_ISCHR(st.st_mode) ? 'c' : S_ISBLK(st.st_mode) ? 'b' : S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : '?';
  /* Open the way the node's mode invites: a 0444 nvidia-caps node is opened read-only
   * by CUDA too, and O_RDWR would stop at the mode check (EACCES, the container has no
   * CAP_DAC_OVERRIDE) before the devices cgroup is asked. O_NONBLOCK: never hang. */
  int rw = (st.st_mode & 0222) != 0;
  int fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOCTTY);
  int e = fd >= 0 ? 0 : errno;
  printf("%s: type=%c %u:%u mode=%04o owner=%u:%u acc=%s open=%s errno=%d\n", path, kind, major(st.st_rdev),
         minor(st.st_rdev), (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid, rw ? "rw" : "r",
         fd >= 0 ? "OK" : "FAIL", e);
  if (fd >= 0) close(fd);
}

static void mknod_probe(const char *spec) {
  /* spec = PATH:MAJ:MIN or PATH:MAJ:MIN:MODE (octal, default 0666), split from the right. */
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", spec);
  unsigned mode = 0666;
  int colons = 0;
  for (const char *c = buf; *c; c++) colons += *c == ':';
  if (colons >= 3) {
    char *m = strrchr(buf, ':');
    *m++ = '\0';
    mode = (unsigned)strtoul(m, NULL, 8) & 07777;
  }
  char *min = strrchr(buf, ':');
  if (!min) { printf("%s: mknod errno=%d\n", spec, EINVAL); return; }
  *min++ = '\0';
  char *maj = strrchr(buf, ':');
  if (!maj) { printf("%s: mknod errno=%d\n", buf, EINVAL); return; }
  *maj++ = '\0';
  unlink(buf);
  if (mknod(buf, S_IFCHR | mode, makedev(strtoul(maj, NULL, 10), strtoul(min, NULL, 10))) != 0) {
    printf("%s: mknod errno=%d\n", buf, errno);
    return;
  }
  probe(buf);
}

static void ls(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) { printf("ls:%s: errno=%d\n", dir, errno); return; }
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
    printf("ls:%s: entry=%s\n", dir, ent->d_name);
  }
  closedir(d);
}

static void cat(const char *file) {
  FILE *f = fopen(file, "r");
  if (!f) { printf("cat:%s: errno=%d\n", file, errno); return; }
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    printf("cat:%s: line=%s\n", file, line);
  }
  fclose(f);
}

int main(int argc, char **argv) {
  umask(0); /* mknod modes are exactly as asked */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strncmp(a, "mknod:", 6)) mknod_probe(a + 6);
    else if (!strncmp(a, "ls:", 3)) ls(a + 3);
    else if (!strncmp(a, "cat:", 4)) cat(a + 4);
    else probe(a);
  }
  printf("probe: done\n");
  return 0;
}
