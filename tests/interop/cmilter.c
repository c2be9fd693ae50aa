/* A small filter written against Sendmail's libmilter, used to check that
 * miltrd's MTA side decodes what the reference library sends.
 * Usage: cmilter inet:PORT@127.0.0.1 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libmilter/mfapi.h>

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3,
                             unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    *pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
           SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_CHGFROM;
    *pf1 = SMFIP_NR_HDR & f1;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat on_rcpt(SMFICTX *ctx, char **argv)
{
    if (strcmp(argv[0], "<reject@example.com>") == 0) {
        smfi_setmlreply(ctx, "550", "5.7.1", "first line", "100% second line", NULL);
        return SMFIS_REJECT;
    }
    if (strcmp(argv[0], "<temp@example.com>") == 0) {
        smfi_setreply(ctx, "451", "4.3.0", "try later");
        return SMFIS_TEMPFAIL;
    }
    return SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx)
{
    static unsigned char body[200000];
    size_t i;
    for (i = 0; i < sizeof body; i++)
        body[i] = "0123456789abcdef"[i % 16];
    smfi_addheader(ctx, "X-C-Added", "added value");
    smfi_insheader(ctx, 0, "X-C-Inserted", "at top");
    smfi_chgheader(ctx, "Subject", 1, "changed subject");
    smfi_chgheader(ctx, "X-Remove", 1, NULL);
    smfi_addrcpt(ctx, "<added@example.com>");
    smfi_addrcpt_par(ctx, "<added-par@example.com>", "NOTIFY=NEVER");
    smfi_delrcpt(ctx, "<gone@example.com>");
    smfi_chgfrom(ctx, "<new-sender@example.com>", "BODY=8BITMIME");
    smfi_replacebody(ctx, body, sizeof body);
    smfi_quarantine(ctx, "held for review");
    return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
    "cmilter", SMFI_VERSION,
    SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
        SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_CHGFROM,
    NULL, NULL, NULL, on_rcpt, NULL, NULL, NULL, on_eom, NULL, NULL, NULL,
    NULL, on_negotiate,
};

int main(int argc, char **argv)
{
    if (argc != 2 || smfi_setconn(argv[1]) == MI_FAILURE)
        return 2;
    if (smfi_register(desc) == MI_FAILURE)
        return 3;
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
