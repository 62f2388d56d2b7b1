#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>

// SSL_OP_NO_RENEGOTIATION is built with SSL_OP_BIT(), a macro Swift does not import.
static const uint64_t SWITCHBOARD_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
