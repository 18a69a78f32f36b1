/**
 * How D-Bus values look in JavaScript:
 * y n q i u h d → number, x t → bigint, b → boolean, s o g → string,
 * ay → Buffer, other arrays → array, a{..} → Map, struct → array, v → Variant.
 */
export class Variant {
  constructor(
    readonly signature: string,
    readonly value: DBusValue,
  ) {}
}

export type DBusValue =
  | number
  | bigint
  | boolean
  | string
  | Buffer
  | Variant
  | DBusValue[]
  | Map<DBusValue, DBusValue>;
