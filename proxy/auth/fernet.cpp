#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <ctime>

#include "proxy/auth/auth.hpp"
#include "proxy/auth/base64.hpp"

namespace pitstop::auth {

namespace {

constexpr unsigned char kVersion = 0x80;
constexpr std::size_t kHeader = 1 + 8 + 16;  // version, timestamp, IV
constexpr std::size_t kMac = 32;

bool hmac_sha256(const unsigned char key[16], const unsigned char* data, std::size_t len, unsigned char out[32]) {
  unsigned int out_len = 0;
  return HMAC(EVP_sha256(), key, 16, data, len, out, &out_len) != nullptr && out_len == 32;
}

}  // namespace

std::optional<Fernet> Fernet::from_key(std::string_view key) {
  auto raw = base64_decode(key, Base64::url);
  if (!raw || raw->size() != 32) return std::nullopt;
  Fernet f;
  std::memcpy(f.signing_, raw->data(), 16);
  std::memcpy(f.encryption_, raw->data() + 16, 16);
  return f;
}

std::optional<std::string> Fernet::decrypt(std::string_view token) const {
  if (token.size() > (1u << 20)) return std::nullopt;
  auto raw = base64_decode(token, Base64::url);
  if (!raw || raw->size() < kHeader + kMac + 16 || (*raw)[0] != static_cast<char>(kVersion)) return std::nullopt;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw->data());
  const std::size_t signed_len = raw->size() - kMac;
  if ((signed_len - kHeader) % 16 != 0) return std::nullopt;
  unsigned char mac[32];
  if (!hmac_sha256(signing_, bytes, signed_len, mac)) return std::nullopt;
  if (CRYPTO_memcmp(mac, bytes + signed_len, kMac) != 0) return std::nullopt;

  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return std::nullopt;
  std::string plain(signed_len - kHeader + 16, '\0');
  int n1 = 0, n2 = 0;
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), nullptr, encryption_, bytes + 9) == 1 &&
            EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(plain.data()), &n1, bytes + kHeader,
                              static_cast<int>(signed_len - kHeader)) == 1 &&
            EVP_DecryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(plain.data()) + n1, &n2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return std::nullopt;
  plain.resize(static_cast<std::size_t>(n1 + n2));
  return plain;
}

std::string Fernet::encrypt(std::string_view plain) const {
  std::string raw(kHeader, '\0');
  raw[0] = static_cast<char>(kVersion);
  std::uint64_t now = static_cast<std::uint64_t>(std::time(nullptr));
  for (int i = 0; i < 8; ++i) raw[1 + i] = static_cast<char>((now >> (56 - 8 * i)) & 0xFF);
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()) + 9, 16);

  std::string cipher(plain.size() + 16, '\0');
  int n1 = 0, n2 = 0;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), nullptr, encryption_, reinterpret_cast<const unsigned char*>(raw.data()) + 9);
  EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(cipher.data()), &n1,
                    reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
  EVP_EncryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(cipher.data()) + n1, &n2);
  EVP_CIPHER_CTX_free(ctx);
  cipher.resize(static_cast<std::size_t>(n1 + n2));
  raw += cipher;
  unsigned char mac[32];
  hmac_sha256(signing_, reinterpret_cast<const unsigned char*>(raw.data()), raw.size(), mac);
  raw.append(reinterpret_cast<const char*>(mac), 32);
  return base64_encode(raw, Base64::url);
}

}  // namespace pitstop::auth
