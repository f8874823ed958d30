/**
 * What the front ends say to a person about an image, a device and an update, written once so
 * that the command-line tool and the browser page word them alike. Refusals need nothing here:
 * the errors (`UpdateError`, `V2RefusedError`, `ImageMismatchError`) carry their own messages.
 */
import type { SignatureBlockInfo } from './image/signature.ts';
import type { UpdateEvent } from './update.ts';
import type { ProtocolChoice } from './v2/auto.ts';
import type { V2Security } from './v2/codec.ts';

export const SIGNATURE_SCHEME_NAMES: Record<SignatureBlockInfo['scheme'], string> = {
  rsa3072: 'RSA-3072-PSS',
  ecdsa256: 'ECDSA P-256',
  ecdsa192: 'ECDSA P-192',
};

/** What is wrong with a signature block, or undefined when it holds. */
export function signatureProblem(b: SignatureBlockInfo): string | undefined {
  if (!b.crcValid) return 'its CRC is wrong (the block is damaged)';
  if (!b.digestMatches) return 'the image changed after it was signed (digest mismatch)';
  if (!b.signatureValid) return 'the signature does not verify with its key';
  return undefined;
}

/** One signature block as `info` shows it: scheme, key digest, valid or what is wrong. */
export function signatureText(b: SignatureBlockInfo): string {
  const problem = signatureProblem(b);
  return `${SIGNATURE_SCHEME_NAMES[b.scheme]}, key digest ${b.keyDigest}, ${problem === undefined ? 'valid' : `INVALID: ${problem}`}`;
}

/** Why the update uses the protocol it uses. */
export function protocolChoiceText(choice: ProtocolChoice): string {
  switch (choice) {
    case 'forced':
      return 'as asked';
    case 'v2-offered':
      return 'the device offers it';
    case 'no-v2-characteristics':
      return 'the device offers no protocol v2';
    case 'mtu-too-small':
      return 'the MTU is too small for protocol v2';
  }
}

/** What a lost link means for the update, and that it reconnects. */
export function resumingText(event: Extract<UpdateEvent, { type: 'resuming' }>): string {
  const { phase, committed, streamSize, attempt, attempts } = event;
  const what =
    phase === 'verify'
      ? 'link lost while reading the new version; reconnecting to read it again'
      : streamSize === undefined || committed === 0
        ? `link lost during ${phase}; reconnecting to start the upload again`
        : `link lost with ${committed} of ${streamSize} bytes confirmed by the device; reconnecting to resume from there`;
  return `${what} (attempt ${attempt} of ${attempts})`;
}

const LINK_SECURITY_TEXT: Record<V2Security['linkSecurity'], string> = {
  open: 'OTA writes on any link (no pairing needed)',
  encrypted: 'OTA writes on an encrypted link only (the central pairs first)',
  authenticated: 'OTA writes on an authenticated (MITM-protected) link only',
};

/** What a device enforces, one line each, from its v2 INFO. */
export function deviceSecurityLines(security: V2Security): string[] {
  return [
    security.signedOnly
      ? 'takes images signed by a key it trusts only (Secure Boot v2 signature)'
      : 'takes unsigned images',
    security.antiRollback
      ? `anti-rollback: no secure_version below ${security.minSecureVersion}`
      : 'no anti-rollback',
    security.allowDowngrade
      ? 'an older app version when the update asks for it'
      : 'no older app version than the running one',
    LINK_SECURITY_TEXT[security.linkSecurity],
  ];
}
