/* maincf_param.h - one main.cf parameter as smtptlsd wants it: what core/settings.c renders and
 * apply/maincf.c writes. A type only; no code. */
#pragma once

struct maincf_param {
        const char *name;
        const char *value; /* NULL: remove the parameter (back to Postfix's default) */
};
