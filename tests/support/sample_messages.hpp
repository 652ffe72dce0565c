// Small messages that several tests need with the same meaning (header-only).
#pragma once

#include <string>

namespace mukai::test {

// A PGP/MIME encrypted message: the engine holds it whole (verdict "held", nothing inside inspected).
inline std::string pgp_encrypted_message(const std::string& subject = "secret") {
  return "From: a@example.com\r\nTo: kikaku@city.example.lg.jp\r\nSubject: " + subject +
         "\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n"
         "--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
         "--e\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"
         "hQEMA1234567890\r\n-----END PGP MESSAGE-----\r\n--e--\r\n";
}

}  // namespace mukai::test
