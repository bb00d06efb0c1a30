-- pitstop: deterministic sample data for the workshop database, generated in SQL with MariaDB's
-- SEQUENCE engine (seq_1_to_N tables), so that a bare Debian 12 box needs nothing but MariaDB.
--
-- Usage (scripts/load-data does this after sql/schema.sql and sql/indexes.sql):
--   SET @pitstop_sample_size = 'small';   -- or 'bench'; default 'small'
--   SET @pitstop_sample_force = 0;        -- 1: reload even if that size is already loaded
--   SOURCE sql/sample_data.sql            -- or pipe the three statements into `mariadb workshop`
-- Prints one row: `loaded <size>`, `already loaded <size>`, or fails with an error.
--
-- Sizes            small    bench
--   customers        200   20,000   CUST-00001 ...
--   vehicles         300   30,000   VEH-00001 ...  (vehicle n belongs to customer ((n-1) mod C)+1)
--   technicians       20      100   TECH-0001 ...  (2-4 skills each, child rows TECH-0001-1 ...)
--   service types     12       12   named by service_name (11 active, 'Carburetor Tuning' retired)
--   items            500    5,000   ITEM-00001 ... (item_code = name)
--   bins      3 per stock item      warehouses 'Main Store - UW', 'Workshop Floor - UW', 'Spare Parts - UW'
--   service orders 2,000  500,000   SO-2026-00001 ... (naming series SO-.YYYY.-.#####; past 99999
--                                   the number simply grows: SO-2026-100000), 1-3 items each
--                                   (child rows SO-2026-00001-1 ...), tabSeries 'SO-2026-' = count
--   users             10      100   user001@workshop.test ... with roles in tabHas Role
--
-- Everything derives from row numbers and CRC32 of fixed strings: the same size always yields
-- the same rows. Facts tests may rely on:
--   * service dates spread evenly, in number order, over 2025-01-01 .. 2026-12-31;
--   * statuses follow the service date against a fixed "as of" date, 2026-12-01 (not CURDATE(),
--     to stay deterministic): earlier than a week before it Completed (93%) / Cancelled (7%); the
--     week before it Completed / In Progress / Cancelled; from it on Scheduled / Draft / Cancelled;
--   * Draft orders have no technician; every other order's technician has a skill for the
--     order's service type and is not Inactive;
--   * an order's customer is its vehicle's customer; total_amount = sum of its items' amount,
--     amount = qty * rate, rate = the item's standard_rate;
--   * docstatus is 0 everywhere (Service Order is submittable: its sample orders are drafts);
--   * every user has the role All; user001, user006, user011, ... (number mod 5 = 1) are also
--     Workshop Managers; users whose number is a multiple of 5 are Technicians; all others
--     (managers included) are Service Advisors; service orders are owned by Service Advisors;
--   * api_key is NULL and no __Auth rows are written (created later by the C++ side);
--   * orders whose service date is in 2025 are history back-entered at go-live: their creation is
--     on 2026-01-01, which is why every order is SO-2026-*; master data was created on 2025-12-31.
--
-- Idempotent: table pitstop_sample records what was loaded (one row: size, loaded_at; loaded_at
-- NULL while a load is under way). Loading the size that is loaded does nothing; loading another
-- size (or after an interrupted load) truncates the sample tables, and also the User secrets in
-- __Auth, tabSessions and tabOAuth Bearer Token, and loads the new size. It refuses to wipe
-- workshop tables that hold data it did not load, unless forced.
-- While loading, the session variable @pitstop_sample_loading is 1 (for triggers that want to
-- skip writing outbox rows for the bulk load).

CREATE TABLE IF NOT EXISTS `pitstop_sample` (
  `size` varchar(20) NOT NULL,
  `loaded_at` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`size`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

DELIMITER ;;

CREATE OR REPLACE PROCEDURE `pitstop_load_sample`(IN p_size VARCHAR(20), IN p_force INT)
proc: BEGIN
  DECLARE n_cust, n_veh, n_tech, n_item, n_so, n_user, n_var INT;
  DECLARE v_loaded VARCHAR(20);
  DECLARE as_of DATE DEFAULT '2026-12-01';

  IF p_size = 'small' THEN
    SET n_cust = 200, n_veh = 300, n_tech = 20, n_item = 500, n_so = 2000, n_user = 10;
  ELSEIF p_size = 'bench' THEN
    SET n_cust = 20000, n_veh = 30000, n_tech = 100, n_item = 5000, n_so = 500000, n_user = 100;
  ELSE
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'pitstop sample: unknown size (expected small or bench)';
  END IF;
  SET n_var = n_item DIV 25;  -- variants per part type

  SET v_loaded = (SELECT `size` FROM pitstop_sample WHERE loaded_at IS NOT NULL LIMIT 1);
  IF v_loaded = p_size AND COALESCE(p_force, 0) = 0 THEN
    SELECT CONCAT('already loaded ', p_size) AS result;
    LEAVE proc;
  END IF;

  -- Data that no (possibly interrupted) sample load put there is not ours to wipe.
  IF COALESCE(p_force, 0) = 0 AND NOT EXISTS (SELECT 1 FROM pitstop_sample)
     AND (EXISTS (SELECT 1 FROM `tabCustomer`) OR EXISTS (SELECT 1 FROM `tabService Order`)
          OR EXISTS (SELECT 1 FROM `tabItem`) OR EXISTS (SELECT 1 FROM `tabUser`)) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT =
      'pitstop sample: the workshop tables hold data the sample loader did not load; not replacing it (force to override)';
  END IF;

  SET @pitstop_sample_loading = 1;
  DELETE FROM pitstop_sample;
  INSERT INTO pitstop_sample (`size`, loaded_at) VALUES (p_size, NULL);

  TRUNCATE TABLE `tabService Order Item`;
  TRUNCATE TABLE `tabService Order`;
  TRUNCATE TABLE `tabBin`;
  TRUNCATE TABLE `tabItem`;
  TRUNCATE TABLE `tabTechnician Skill`;
  TRUNCATE TABLE `tabTechnician`;
  TRUNCATE TABLE `tabService Type`;
  TRUNCATE TABLE `tabVehicle`;
  TRUNCATE TABLE `tabCustomer`;
  TRUNCATE TABLE `tabHas Role`;
  TRUNCATE TABLE `tabRole`;
  TRUNCATE TABLE `tabUser`;
  TRUNCATE TABLE `tabSessions`;
  TRUNCATE TABLE `tabOAuth Bearer Token`;
  DELETE FROM `__Auth` WHERE doctype = 'User';
  DELETE FROM `tabSeries` WHERE name IN ('SO-2026-', 'CUST-', 'VEH-', 'TECH-');

  -- ----------------------------------------------------------------------------------------
  -- Word lists (0-based i)
  -- ----------------------------------------------------------------------------------------
  DROP TEMPORARY TABLE IF EXISTS t_first, t_last, t_suffix, t_territory, t_mm, t_color, t_brand,
    t_part, t_st, t_wh, t_skill, t_cand, t_cnt, t_item, t_so, t_soi, t_tot, t_role;

  CREATE TEMPORARY TABLE t_first (i INT PRIMARY KEY, v VARCHAR(40));
  INSERT INTO t_first VALUES
    (0,'James'),(1,'Mary'),(2,'Ahmed'),(3,'Fatima'),(4,'Robert'),(5,'Linda'),(6,'Mohammed'),
    (7,'Aisha'),(8,'David'),(9,'Sarah'),(10,'Omar'),(11,'Layla'),(12,'Michael'),(13,'Emma'),
    (14,'Ali'),(15,'Noor'),(16,'John'),(17,'Olivia'),(18,'Hassan'),(19,'Maryam'),(20,'William'),
    (21,'Sophia'),(22,'Khalid'),(23,'Huda'),(24,'Daniel'),(25,'Chloe'),(26,'Yusuf'),(27,'Zainab'),
    (28,'Thomas'),(29,'Grace'),(30,'Salim'),(31,'Amina'),(32,'Peter'),(33,'Hannah'),(34,'Tariq'),
    (35,'Rania'),(36,'George'),(37,'Lucy'),(38,'Sami'),(39,'Dana');

  CREATE TEMPORARY TABLE t_last (i INT PRIMARY KEY, v VARCHAR(40));
  INSERT INTO t_last VALUES
    (0,'Smith'),(1,'Al-Balushi'),(2,'Johnson'),(3,'Al-Harthy'),(4,'Brown'),(5,'Al-Rawahi'),
    (6,'Taylor'),(7,'Al-Said'),(8,'Wilson'),(9,'Al-Hinai'),(10,'Martin'),(11,'Al-Busaidi'),
    (12,'Anderson'),(13,'Al-Lawati'),(14,'Thomas'),(15,'Al-Kindi'),(16,'Moore'),(17,'Al-Farsi'),
    (18,'Clark'),(19,'Al-Amri'),(20,'Lewis'),(21,'Al-Maskari'),(22,'Walker'),(23,'Al-Shukaili'),
    (24,'Hall'),(25,'Al-Zadjali'),(26,'Young'),(27,'Al-Habsi'),(28,'King'),(29,'Al-Siyabi'),
    (30,'Wright'),(31,'Al-Riyami'),(32,'Green'),(33,'Al-Abri'),(34,'Baker'),(35,'Al-Toubi'),
    (36,'Adams'),(37,'Al-Hashmi'),(38,'Nelson'),(39,'Al-Jabri');

  CREATE TEMPORARY TABLE t_suffix (i INT PRIMARY KEY, v VARCHAR(40));
  INSERT INTO t_suffix VALUES
    (0,'Logistics'),(1,'Transport'),(2,'Rentals'),(3,'Trading'),(4,'Fleet Services'),(5,'Contracting');

  CREATE TEMPORARY TABLE t_territory (i INT PRIMARY KEY, v VARCHAR(40));
  INSERT INTO t_territory VALUES (0,'North'),(1,'South'),(2,'East'),(3,'West'),(4,'Central');

  -- make, model, world manufacturer identifier (VIN prefix)
  CREATE TEMPORARY TABLE t_mm (i INT PRIMARY KEY, make VARCHAR(40), model VARCHAR(40), wmi CHAR(3));
  INSERT INTO t_mm VALUES
    (0,'Toyota','Corolla','JTD'),(1,'Toyota','Camry','JTN'),(2,'Toyota','Land Cruiser','JTM'),
    (3,'Toyota','Hilux','MR0'),(4,'Nissan','Patrol','JN1'),(5,'Nissan','Sunny','JN1'),
    (6,'Nissan','Altima','1N4'),(7,'Honda','Civic','JHM'),(8,'Honda','Accord','JHM'),
    (9,'Hyundai','Elantra','KMH'),(10,'Hyundai','Tucson','KMH'),(11,'Kia','Sportage','KNA'),
    (12,'Kia','Cerato','KNA'),(13,'Ford','Ranger','MPB'),(14,'Ford','Explorer','1FM'),
    (15,'Mitsubishi','Pajero','JA4'),(16,'Mitsubishi','L200','MMB'),(17,'Chevrolet','Tahoe','1GN'),
    (18,'Lexus','LX 570','JTJ'),(19,'BMW','X5','WBA');

  CREATE TEMPORARY TABLE t_color (i INT PRIMARY KEY, v VARCHAR(40));
  INSERT INTO t_color VALUES
    (0,'White'),(1,'Silver'),(2,'Black'),(3,'Grey'),(4,'Red'),(5,'Blue'),(6,'Beige'),(7,'Brown'),
    (8,'Green'),(9,'Gold');

  CREATE TEMPORARY TABLE t_brand (i INT PRIMARY KEY, v VARCHAR(40));
  INSERT INTO t_brand VALUES
    (0,'Bosch'),(1,'Mann-Filter'),(2,'Castrol'),(3,'Brembo'),(4,'NGK'),(5,'Denso'),(6,'Valeo'),
    (7,'Mobil'),(8,'Michelin'),(9,'Varta');

  -- part types: item n is part type ((n-1) mod 25)+1, variant ((n-1) div 25)+1
  CREATE TEMPORARY TABLE t_part (i INT PRIMARY KEY, part VARCHAR(60), grp VARCHAR(40),
    uom VARCHAR(20), price DECIMAL(12,2), stock INT);
  INSERT INTO t_part VALUES
    (1,'Engine Oil 5W-30 (1L)','Fluids','Litre',4.50,1),
    (2,'Engine Oil 10W-40 (1L)','Fluids','Litre',3.80,1),
    (3,'Oil Filter','Filters','Nos',3.50,1),
    (4,'Air Filter','Filters','Nos',6.00,1),
    (5,'Cabin Air Filter','Filters','Nos',7.50,1),
    (6,'Fuel Filter','Filters','Nos',9.00,1),
    (7,'Brake Pad Set (Front)','Brakes','Set',28.00,1),
    (8,'Brake Pad Set (Rear)','Brakes','Set',24.00,1),
    (9,'Brake Disc','Brakes','Nos',45.00,1),
    (10,'Brake Fluid DOT4 (1L)','Fluids','Litre',6.50,1),
    (11,'Spark Plug','Engine Parts','Nos',4.00,1),
    (12,'Timing Belt Kit','Engine Parts','Set',95.00,1),
    (13,'Serpentine Belt','Engine Parts','Nos',22.00,1),
    (14,'Coolant (1L)','Fluids','Litre',3.00,1),
    (15,'Car Battery 70Ah','Electrical','Nos',65.00,1),
    (16,'Headlight Bulb H7','Electrical','Nos',5.50,1),
    (17,'Wiper Blade','Accessories','Pair',9.00,1),
    (18,'AC Refrigerant R134a','Air Conditioning','Kg',18.00,1),
    (19,'AC Compressor','Air Conditioning','Nos',240.00,1),
    (20,'Shock Absorber','Suspension','Nos',55.00,1),
    (21,'Control Arm','Suspension','Nos',48.00,1),
    (22,'Tyre 205/55 R16','Tyres','Nos',60.00,1),
    (23,'Wheel Balancing Weights','Tyres','Set',4.00,1),
    (24,'Transmission Fluid ATF (1L)','Fluids','Litre',7.00,1),
    (25,'Workshop Labour','Services','Hour',15.00,0);

  -- service types: popularity = share of orders (h in lo..hi of 0..99); b1..b3 = part types used
  CREATE TEMPORARY TABLE t_st (i INT PRIMARY KEY, name VARCHAR(60), category VARCHAR(40),
    price DECIMAL(12,2), minutes INT, skill VARCHAR(40), active INT, lo INT, hi INT,
    b1 INT, b2 INT, b3 INT, descr VARCHAR(200));
  INSERT INTO t_st VALUES
    (1,'Oil Change','Maintenance',25.00,30,'Lubrication',1,0,25,1,3,4,
       'Engine oil and oil filter replacement, fluid level check'),
    (2,'Brake Service','Repair',85.00,90,'Brakes',1,26,35,7,9,10,
       'Brake pad and disc inspection and replacement, brake fluid top-up'),
    (3,'Tire Rotation','Tyres',20.00,30,'Tyres',1,36,43,23,22,25,
       'Rotate tyres front to rear, check pressure and tread depth'),
    (4,'Wheel Alignment','Tyres',35.00,45,'Alignment',1,44,50,25,23,21,
       'Four-wheel alignment and steering geometry check'),
    (5,'Battery Replacement','Electrical',15.00,20,'Electrical',1,51,56,15,16,25,
       'Battery test and replacement, charging system check'),
    (6,'Air Conditioning Service','HVAC',60.00,60,'Air Conditioning',1,57,64,18,5,19,
       'AC leak test, refrigerant recharge, cabin filter replacement'),
    (7,'Engine Diagnostics','Diagnostics',40.00,60,'Diagnostics',1,65,73,25,11,6,
       'OBD scan, fault code analysis and road test'),
    (8,'Transmission Service','Repair',120.00,120,'Transmission',1,74,77,24,25,13,
       'Transmission fluid and filter change'),
    (9,'Coolant Flush','Maintenance',45.00,45,'Cooling System',1,78,82,14,13,25,
       'Cooling system flush and coolant replacement'),
    (10,'Suspension Repair','Repair',150.00,150,'Suspension',1,83,87,20,21,25,
       'Shock absorber and control arm inspection and replacement'),
    (11,'Full Vehicle Inspection','Inspection',50.00,90,'Inspection',1,88,99,25,17,16,
       'Multi-point inspection with written report'),
    (12,'Carburetor Tuning','Maintenance',30.00,60,'Carburetors',0,100,99,11,6,25,
       'Retired: carburetor cleaning and idle adjustment');

  CREATE TEMPORARY TABLE t_wh (i INT PRIMARY KEY, v VARCHAR(60));
  INSERT INTO t_wh VALUES (1,'Main Store - UW'),(2,'Workshop Floor - UW'),(3,'Spare Parts - UW');

  -- ----------------------------------------------------------------------------------------
  -- Roles and users
  -- ----------------------------------------------------------------------------------------
  INSERT INTO `tabRole` (name, creation, modified, modified_by, owner, role_name, disabled,
                         is_custom, desk_access)
  SELECT r.v, TIMESTAMP'2025-12-31 15:00:00', TIMESTAMP'2025-12-31 15:00:00', 'Administrator',
         'Administrator', r.v, 0, r.custom, 1
  FROM (SELECT 'All' v, 0 custom UNION ALL SELECT 'Service Advisor', 1
        UNION ALL SELECT 'Technician', 1 UNION ALL SELECT 'Workshop Manager', 1) r;

  INSERT INTO `tabUser` (name, creation, modified, modified_by, owner, enabled, email, first_name,
                         last_name, full_name, username, send_welcome_email, user_type)
  SELECT CONCAT('user', LPAD(u.seq, 3, '0'), '@workshop.test'), u.ts, u.ts, 'Administrator',
         'Administrator', 1, CONCAT('user', LPAD(u.seq, 3, '0'), '@workshop.test'), f.v, l.v,
         CONCAT(f.v, ' ', l.v), CONCAT('user', LPAD(u.seq, 3, '0')), 0, 'System User'
  FROM (SELECT seq, TIMESTAMP'2025-12-31 15:00:00' + INTERVAL seq SECOND AS ts
        FROM seq_1_to_1000 WHERE seq <= n_user) u
  JOIN t_first f ON f.i = CRC32(CONCAT('uf', u.seq)) MOD 40
  JOIN t_last l ON l.i = CRC32(CONCAT('ul', u.seq)) MOD 40;

  CREATE TEMPORARY TABLE t_role (u INT, ord INT, role VARCHAR(40), PRIMARY KEY (u, ord));
  INSERT INTO t_role
  SELECT seq, 1, 'Workshop Manager' FROM seq_1_to_1000 WHERE seq <= n_user AND seq MOD 5 = 1
  UNION ALL
  SELECT seq, 2, 'Service Advisor' FROM seq_1_to_1000 WHERE seq <= n_user AND seq MOD 5 <> 0
  UNION ALL
  SELECT seq, 3, 'Technician' FROM seq_1_to_1000 WHERE seq <= n_user AND seq MOD 5 = 0
  UNION ALL
  SELECT seq, 4, 'All' FROM seq_1_to_1000 WHERE seq <= n_user;

  INSERT INTO `tabHas Role` (name, creation, modified, modified_by, owner, idx, role, parent,
                             parentfield, parenttype)
  SELECT CONCAT(x.usr, '-', x.idx), x.ts, x.ts, 'Administrator', 'Administrator', x.idx, x.role,
         x.usr, 'roles', 'User'
  FROM (SELECT CONCAT('user', LPAD(u, 3, '0'), '@workshop.test') AS usr,
               ROW_NUMBER() OVER (PARTITION BY u ORDER BY ord) AS idx, role,
               TIMESTAMP'2025-12-31 15:00:00' + INTERVAL u SECOND AS ts
        FROM t_role) x;

  -- ----------------------------------------------------------------------------------------
  -- Service types, technicians and their skills
  -- ----------------------------------------------------------------------------------------
  INSERT INTO `tabService Type` (name, creation, modified, modified_by, owner, service_name,
                                 description, standard_price, duration_minutes, category, is_active)
  SELECT name, TIMESTAMP'2025-12-31 16:00:00' + INTERVAL i MINUTE,
         TIMESTAMP'2025-12-31 16:00:00' + INTERVAL i MINUTE, 'Administrator', 'Administrator',
         name, descr, price, minutes, category, active
  FROM t_st;

  INSERT INTO `tabTechnician` (name, creation, modified, modified_by, owner, technician_name,
                               employee, status, phone, email)
  SELECT CONCAT('TECH-', LPAD(t.seq, 4, '0')), t.ts, t.ts, 'Administrator', 'Administrator',
         CONCAT(f.v, ' ', l.v), CONCAT('HR-EMP-', LPAD(t.seq, 5, '0')),
         CASE WHEN t.seq MOD 25 = 0 THEN 'Inactive' WHEN t.seq MOD 10 = 7 THEN 'On Leave'
              ELSE 'Active' END,
         CONCAT('+1555100', LPAD(t.seq, 4, '0')),
         CONCAT('tech', LPAD(t.seq, 4, '0'), '@workshop.test')
  FROM (SELECT seq, TIMESTAMP'2025-12-31 16:30:00' + INTERVAL seq SECOND AS ts
        FROM seq_1_to_1000 WHERE seq <= n_tech) t
  JOIN t_first f ON f.i = CRC32(CONCAT('tf', t.seq)) MOD 40
  JOIN t_last l ON l.i = CRC32(CONCAT('tl', t.seq)) MOD 40;

  -- technician t has 2 + t mod 3 skills; skill j covers active service type
  -- ((t-1) + offset_j) mod 11 + 1, offsets 0, 3, 6, 8: every active type has skilled technicians.
  CREATE TEMPORARY TABLE t_skill (t INT, j INT, st INT, PRIMARY KEY (t, j));
  INSERT INTO t_skill
  SELECT t.seq, j.seq,
         ((t.seq - 1) + CASE j.seq WHEN 1 THEN 0 WHEN 2 THEN 3 WHEN 3 THEN 6 ELSE 8 END) MOD 11 + 1
  FROM seq_1_to_1000 t JOIN seq_1_to_4 j ON j.seq <= 2 + t.seq MOD 3
  WHERE t.seq <= n_tech;

  INSERT INTO `tabTechnician Skill` (name, creation, modified, modified_by, owner, idx, skill,
                                     level, certified, service_type, parent, parentfield, parenttype)
  SELECT CONCAT('TECH-', LPAD(k.t, 4, '0'), '-', k.j),
         TIMESTAMP'2025-12-31 16:30:00' + INTERVAL k.t SECOND,
         TIMESTAMP'2025-12-31 16:30:00' + INTERVAL k.t SECOND, 'Administrator', 'Administrator',
         k.j, st.skill, x.lvl, IF(x.lvl >= 4 OR x.h MOD 3 = 0, 1, 0), st.name,
         CONCAT('TECH-', LPAD(k.t, 4, '0')), 'skills', 'Technician'
  FROM t_skill k
  JOIN t_st st ON st.i = k.st
  JOIN (SELECT t, j, CRC32(CONCAT('sk', t, '-', j)) AS h,
               1 + CRC32(CONCAT('sk', t, '-', j)) MOD 5 AS lvl FROM t_skill) x
    ON x.t = k.t AND x.j = k.j;

  -- candidates for assignment: skilled, not Inactive technicians, numbered per service type
  CREATE TEMPORARY TABLE t_cand (st INT, rn INT, t INT, PRIMARY KEY (st, rn));
  INSERT INTO t_cand
  SELECT st, ROW_NUMBER() OVER (PARTITION BY st ORDER BY t), t
  FROM t_skill WHERE t MOD 25 <> 0;
  CREATE TEMPORARY TABLE t_cnt (st INT PRIMARY KEY, cnt INT);
  INSERT INTO t_cnt SELECT st, COUNT(*) FROM t_cand GROUP BY st;

  -- ----------------------------------------------------------------------------------------
  -- Customers and vehicles
  -- ----------------------------------------------------------------------------------------
  INSERT INTO `tabCustomer` (name, creation, modified, modified_by, owner, customer_name,
                             customer_type, customer_group, mobile_no, email_id, territory, credit_limit, disabled)
  SELECT CONCAT('CUST-', LPAD(c.seq, 5, '0')), c.ts, c.ts, 'Administrator', 'Administrator',
         IF(c.seq MOD 8 = 0, CONCAT(l.v, ' ', sf.v), CONCAT(f.v, ' ', l.v)),
         IF(c.seq MOD 8 = 0, 'Company', 'Individual'),
         IF(c.seq MOD 8 = 0, 'Commercial', 'Individual'),
         CONCAT('+1555', LPAD(c.seq, 7, '0')),
         CONCAT('cust', LPAD(c.seq, 5, '0'), '@example.com'),
         tr.v, IF(c.seq MOD 8 = 0, 25000, 1000 + CRC32(CONCAT('cc', c.seq)) MOD 10 * 500), IF(c.seq MOD 50 = 0, 1, 0)
  FROM (SELECT seq, TIMESTAMP'2025-12-31 18:00:00' + INTERVAL seq * 100000 MICROSECOND AS ts
        FROM seq_1_to_1000000 WHERE seq <= n_cust) c
  JOIN t_first f ON f.i = CRC32(CONCAT('cf', c.seq)) MOD 40
  JOIN t_last l ON l.i = CRC32(CONCAT('cl', c.seq)) MOD 40
  JOIN t_suffix sf ON sf.i = CRC32(CONCAT('cs', c.seq)) MOD 6
  JOIN t_territory tr ON tr.i = CRC32(CONCAT('ct', c.seq)) MOD 5;

  INSERT INTO `tabVehicle` (name, creation, modified, modified_by, owner, license_plate, vin, make,
                            model, year, customer, odometer, color)
  SELECT CONCAT('VEH-', LPAD(v.seq, 5, '0')), v.ts, v.ts, 'Administrator', 'Administrator',
         CONCAT(CHAR(65 + v.h MOD 26), CHAR(65 + (v.h DIV 26) MOD 26),
                CHAR(65 + (v.seq DIV 10000) MOD 26), ' ', LPAD(v.seq MOD 10000, 4, '0')),
         CONCAT(mm.wmi, UPPER(LEFT(MD5(CONCAT('vin', v.seq)), 8)), LPAD(v.seq, 6, '0')),
         mm.make, mm.model, v.yr,
         CONCAT('CUST-', LPAD((v.seq - 1) MOD n_cust + 1, 5, '0')),
         (2026 - v.yr) * (8000 + v.h MOD 12000) + v.h MOD 5000,
         co.v
  FROM (SELECT seq, TIMESTAMP'2025-12-31 19:00:00' + INTERVAL seq * 100000 MICROSECOND AS ts,
               CRC32(CONCAT('vp', seq)) AS h, 2008 + CRC32(CONCAT('vy', seq)) MOD 18 AS yr
        FROM seq_1_to_1000000 WHERE seq <= n_veh) v
  JOIN t_mm mm ON mm.i = CRC32(CONCAT('vm', v.seq)) MOD 20
  JOIN t_color co ON co.i = CRC32(CONCAT('vc', v.seq)) MOD 10;

  -- ----------------------------------------------------------------------------------------
  -- Items and bins
  -- ----------------------------------------------------------------------------------------
  CREATE TEMPORARY TABLE t_item (i INT PRIMARY KEY, code VARCHAR(20), item_name VARCHAR(140),
    grp VARCHAR(40), uom VARCHAR(20), rate DECIMAL(21,9), stock INT, disabled INT);
  INSERT INTO t_item
  SELECT x.seq, CONCAT('ITEM-', LPAD(x.seq, 5, '0')),
         IF(p.stock = 0, CONCAT(p.part, ' - Grade ', x.var),
            CONCAT(p.part, ' - ', b.v, ' ', LPAD(x.var, 3, '0'))),
         p.grp, p.uom,
         ROUND(p.price * (80 + CRC32(CONCAT('ir', x.seq)) MOD 41) / 100, 2),
         p.stock, IF(x.seq MOD 97 = 0, 1, 0)
  FROM (SELECT seq, (seq - 1) MOD 25 + 1 AS pt, (seq - 1) DIV 25 + 1 AS var
        FROM seq_1_to_1000000 WHERE seq <= n_item) x
  JOIN t_part p ON p.i = x.pt
  JOIN t_brand b ON b.i = CRC32(CONCAT('ib', x.seq)) MOD 10;

  INSERT INTO `tabItem` (name, creation, modified, modified_by, owner, item_code, item_name,
                         item_group, stock_uom, standard_rate, is_stock_item, disabled, description)
  SELECT code, TIMESTAMP'2025-12-31 17:00:00' + INTERVAL i * 100000 MICROSECOND,
         TIMESTAMP'2025-12-31 17:00:00' + INTERVAL i * 100000 MICROSECOND,
         'Administrator', 'Administrator', code, item_name, grp, uom, rate, stock, disabled,
         CONCAT(item_name, ' (', grp, ', per ', uom, ')')
  FROM t_item;

  INSERT INTO `tabBin` (name, creation, modified, modified_by, owner, item_code, warehouse,
                        actual_qty, reserved_qty, projected_qty, ordered_qty)
  SELECT CONCAT('BIN-', LPAD(y.i, 5, '0'), '-', y.w), y.ts, y.ts, 'Administrator', 'Administrator',
         y.code, y.wh, y.actual, y.reserved, y.actual + y.ordered - y.reserved, y.ordered
  FROM (SELECT x.i, x.w, x.code, x.wh, x.ts, x.actual,
               LEAST(x.actual, CRC32(CONCAT('br', x.i, '-', x.w)) MOD 8) AS reserved,
               IF(x.actual < 10, 20 + CRC32(CONCAT('bo', x.i, '-', x.w)) MOD 30, 0) AS ordered
        FROM (SELECT it.i, w.i AS w, it.code, w.v AS wh,
                     TIMESTAMP'2025-12-31 17:30:00' + INTERVAL it.i * 100000 MICROSECOND AS ts,
                     -- about 1 bin in 12 is out of stock; the main store holds the most
                     IF(CRC32(CONCAT('ba', it.i, '-', w.i)) MOD 12 = 0, 0,
                        CRC32(CONCAT('bq', it.i, '-', w.i)) MOD IF(w.i = 1, 200, 40)) AS actual
              FROM t_item it JOIN t_wh w
              WHERE it.stock = 1) x) y;

  -- ----------------------------------------------------------------------------------------
  -- Service orders and their items
  -- ----------------------------------------------------------------------------------------
  CREATE TEMPORARY TABLE t_so (n INT PRIMARY KEY, name VARCHAR(20), d DATE, v INT, st INT,
    k INT, status VARCHAR(20), tech INT NULL, u INT, creation DATETIME(6), modified DATETIME(6),
    h INT UNSIGNED) ENGINE=InnoDB;
  INSERT INTO t_so
  SELECT z.n, CONCAT('SO-2026-', IF(z.n < 100000, LPAD(z.n, 5, '0'), z.n)), z.d, z.v, z.st, z.k,
         z.status,
         IF(z.status = 'Draft', NULL,
            (SELECT c.t FROM t_cand c JOIN t_cnt k ON k.st = c.st
             WHERE c.st = z.st AND c.rn = CRC32(CONCAT('sa', z.n)) MOD k.cnt + 1)),
         z.u, z.creation,
         CASE z.status
           WHEN 'Completed' THEN GREATEST(z.creation, TIMESTAMP(z.d, '17:30:00'))
           WHEN 'In Progress' THEN GREATEST(z.creation, TIMESTAMP(z.d, '09:15:00'))
           WHEN 'Cancelled' THEN GREATEST(z.creation, TIMESTAMP(z.d - INTERVAL 1 DAY, '16:00:00'))
           ELSE z.creation END,
         z.h
  FROM (
    SELECT y.n, y.d, y.v, y.st, y.k, y.u, y.h,
           CASE WHEN y.d < as_of - INTERVAL 7 DAY THEN IF(y.hs < 7, 'Cancelled', 'Completed')
                WHEN y.d < as_of THEN
                  CASE WHEN y.hs < 10 THEN 'Cancelled' WHEN y.hs < 55 THEN 'In Progress'
                       ELSE 'Completed' END
                ELSE CASE WHEN y.hs < 5 THEN 'Cancelled' WHEN y.hs < 25 THEN 'Draft'
                          ELSE 'Scheduled' END END AS status,
           IF(y.d < DATE'2026-01-01',
              TIMESTAMP'2026-01-01 01:00:00' + INTERVAL y.n * 50000 MICROSECOND,
              GREATEST(TIMESTAMP(y.d - INTERVAL y.h MOD 15 DAY,
                                 MAKETIME(8 + y.h MOD 10, (y.h DIV 10) MOD 60, (y.h DIV 600) MOD 60))
                         + INTERVAL (y.h DIV 36000) MOD 1000000 MICROSECOND,
                       TIMESTAMP'2026-01-01 06:00:00')) AS creation
    FROM (
      SELECT x.n, x.d, x.v, st.i AS st, x.k, x.hs, x.h,
             IF(x.u0 MOD 5 = 0, x.u0 - 1, x.u0) AS u
      FROM (
        SELECT seq AS n,
               DATE'2025-01-01' + INTERVAL FLOOR((seq - 1) * 730 / n_so) DAY AS d,
               CRC32(CONCAT('sv', seq)) MOD n_veh + 1 AS v,
               CRC32(CONCAT('st', seq)) MOD 100 AS hp,
               CRC32(CONCAT('ss', seq)) MOD 100 AS hs,
               1 + CRC32(CONCAT('sk', seq)) MOD 3 AS k,
               CRC32(CONCAT('su', seq)) MOD n_user + 1 AS u0,
               CRC32(CONCAT('sc', seq)) AS h
        FROM seq_1_to_1000000 WHERE seq <= n_so) x
      JOIN t_st st ON x.hp BETWEEN st.lo AND st.hi) y) z;

  CREATE TEMPORARY TABLE t_soi (n INT, j INT, item INT, qty DECIMAL(21,9), rate DECIMAL(21,9),
    amount DECIMAL(21,9), PRIMARY KEY (n, j)) ENGINE=InnoDB;
  INSERT INTO t_soi
  SELECT y.n, y.j, y.item, y.qty, it.rate, y.qty * it.rate
  FROM (
    SELECT x.n, x.j, x.item,
           CASE p.uom WHEN 'Litre' THEN 4 + x.hq MOD 2 WHEN 'Nos' THEN 1 + x.hq MOD 2
                      WHEN 'Hour' THEN 1 + x.hq MOD 3 ELSE 1 END AS qty
    FROM (
      SELECT s.n, j.seq AS j,
             CASE j.seq WHEN 1 THEN st.b1 WHEN 2 THEN st.b2 ELSE st.b3 END
               + 25 * (CRC32(CONCAT('iv', s.n, '-', j.seq)) MOD n_var) AS item,
             CASE j.seq WHEN 1 THEN st.b1 WHEN 2 THEN st.b2 ELSE st.b3 END AS pt,
             CRC32(CONCAT('iq', s.n, '-', j.seq)) AS hq
      FROM t_so s
      JOIN seq_1_to_3 j ON j.seq <= s.k
      JOIN t_st st ON st.i = s.st) x
    JOIN t_part p ON p.i = x.pt) y
  JOIN t_item it ON it.i = y.item;

  CREATE TEMPORARY TABLE t_tot (n INT PRIMARY KEY, total DECIMAL(21,9)) ENGINE=InnoDB;
  INSERT INTO t_tot SELECT n, SUM(amount) FROM t_soi GROUP BY n;

  INSERT INTO `tabService Order` (name, creation, modified, modified_by, owner, naming_series,
                                  customer, vehicle, status, service_date, technician_assigned,
                                  service_type, estimated_cost, total_amount, description)
  SELECT s.name, s.creation, s.modified,
         CONCAT('user', LPAD(s.u, 3, '0'), '@workshop.test'),
         CONCAT('user', LPAD(s.u, 3, '0'), '@workshop.test'),
         'SO-.YYYY.-.#####',
         CONCAT('CUST-', LPAD((s.v - 1) MOD n_cust + 1, 5, '0')),
         CONCAT('VEH-', LPAD(s.v, 5, '0')),
         s.status, s.d,
         IF(s.tech IS NULL, NULL, CONCAT('TECH-', LPAD(s.tech, 4, '0'))),
         st.name,
         ROUND(t.total * (90 + (s.h DIV 7) MOD 21) / 100, 2),
         t.total,
         CONCAT(st.name, ' for ', mm.make, ' ', mm.model, ' (VEH-', LPAD(s.v, 5, '0'), ')')
  FROM t_so s
  JOIN t_tot t ON t.n = s.n
  JOIN t_st st ON st.i = s.st
  JOIN t_mm mm ON mm.i = CRC32(CONCAT('vm', s.v)) MOD 20
  ORDER BY s.n;

  INSERT INTO `tabService Order Item` (name, creation, modified, modified_by, owner, idx,
                                       item_code, item_name, qty, rate, amount, parent,
                                       parentfield, parenttype)
  SELECT CONCAT(s.name, '-', i.j), s.creation, s.modified,
         CONCAT('user', LPAD(s.u, 3, '0'), '@workshop.test'),
         CONCAT('user', LPAD(s.u, 3, '0'), '@workshop.test'),
         i.j, it.code, it.item_name, i.qty, i.rate, i.amount, s.name, 'items', 'Service Order'
  FROM t_soi i
  JOIN t_so s ON s.n = i.n
  JOIN t_item it ON it.i = i.item
  ORDER BY i.n, i.j;

  INSERT INTO `tabSeries` (name, current) VALUES ('SO-2026-', n_so)
    ON DUPLICATE KEY UPDATE current = n_so;
  -- The other naming series of rules/workshop.json continue after the sample names.
  INSERT INTO `tabSeries` (name, current) VALUES ('CUST-', n_cust), ('VEH-', n_veh), ('TECH-', n_tech)
    ON DUPLICATE KEY UPDATE current = VALUES(current);

  DROP TEMPORARY TABLE IF EXISTS t_first, t_last, t_suffix, t_territory, t_mm, t_color, t_brand,
    t_part, t_st, t_wh, t_skill, t_cand, t_cnt, t_item, t_so, t_soi, t_tot, t_role;

  UPDATE pitstop_sample SET loaded_at = NOW(6) WHERE `size` = p_size;
  SET @pitstop_sample_loading = NULL;
  SELECT CONCAT('loaded ', p_size) AS result;
END;;

DELIMITER ;

CALL pitstop_load_sample(COALESCE(@pitstop_sample_size, 'small'), COALESCE(@pitstop_sample_force, 0));
DROP PROCEDURE IF EXISTS `pitstop_load_sample`;
