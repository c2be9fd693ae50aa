/* The reference filter on C libmilter: continue everywhere, add one header. */
#include <stdlib.h>
#include <libmilter/mfapi.h>

static sfsistat cont_conn(SMFICTX *c, char *h, _SOCK_ADDR *a) { return SMFIS_CONTINUE; }
static sfsistat cont_str(SMFICTX *c, char *s) { return SMFIS_CONTINUE; }
static sfsistat cont_argv(SMFICTX *c, char **a) { return SMFIS_CONTINUE; }
static sfsistat cont_hdr(SMFICTX *c, char *n, char *v) { return SMFIS_CONTINUE; }
static sfsistat cont(SMFICTX *c) { return SMFIS_CONTINUE; }
static sfsistat cont_body(SMFICTX *c, unsigned char *b, size_t l) { return SMFIS_CONTINUE; }
static sfsistat eom(SMFICTX *c) { smfi_addheader(c, "X-Bench", "c"); return SMFIS_CONTINUE; }

static struct smfiDesc desc = {
    "cref", SMFI_VERSION, SMFIF_ADDHDRS, cont_conn, cont_str, cont_argv, cont_argv,
    cont_hdr, cont, cont_body, eom, cont, cont, cont_str, cont, NULL,
};

int main(int argc, char **argv)
{
    if (argc != 2 || smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE)
        return 2;
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
