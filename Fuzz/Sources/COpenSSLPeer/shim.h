// The system OpenSSL for TLSRecordFuzzer's peer: raw SSL over memory BIOs.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
